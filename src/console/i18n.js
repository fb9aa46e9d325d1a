// Every console string in English and Chinese. The choice is remembered.
export const STRINGS = {
  en: {
    workspace: "Workspace", integration: "Data Integration", dataAccess: "Data Access",
    language: "Language", logout: "Log out", login: "Log in", username: "Username", password: "Password",
    loginFailed: "Wrong username or password", addCluster: "Add managed cluster", cards: "Cards", list: "List",
    noClusters: "No managed clusters yet. Add one, then register its nodes.",
    name: "Name", status: "Status", version: "EMQX version", edition: "Edition", nodes: "Nodes",
    connections: "Connections", runningTime: "Running time", created: "Created", actions: "Actions",
    description: "Description", serviceAddress: "Service address (EMQX dashboard URL)",
    registerNode: "Register node", enterDashboard: "Enter Dashboard", viewNodes: "View nodes", edit: "Edit",
    history: "History", delete: "Delete", logs: "Logs", transfer: "Transfer", cancel: "Cancel", confirm: "Confirm",
    save: "Save", close: "Close", copy: "Copy", copied: "Copied",
    "status.created": "Created", "status.registering": "Registering", "status.running": "Running",
    "status.deleting": "Deleting", "status.abnormal": "Abnormal",
    "reason.agent_offline": "Agent offline", "reason.emqx_unreachable": "EMQX unreachable",
    "reason.emqx_auth_failed": "EMQX credentials rejected", "reason.nodes_stopped": "Nodes stopped",
    "reason.unsupported_version": "Unsupported version", "reason.agent_error": "Agent error",
    reason: "Reason", since: "Since",
    createTitle: "Add managed cluster", nameRules: "1–200 characters: letters, digits, spaces, '-' and '_'; no leading or trailing space.",
    nameRequired: "Name is required", nameTooLong: "Name is longer than 200 characters", nameSpaces: "Name must not start or end with a space",
    nameChars: "Only letters, digits, spaces, '-' and '_' are allowed",
    guideTitle: "Register node", platform: "Installation", binary: "Binary", kubernetes: "Kubernetes", arch: "CPU architecture",
    nodeConfig: "Node configuration", enableLog: "Collect EMQX logs (enableLog)", logDir: "Log directory (logDir)",
    dashboardUrl: "Dashboard URL (dashboardUrl)", apiUrl: "API URL (apiUrl)",
    stepDownload: "Download the agent", stepChmod: "Make it executable", stepStart: "Start the agent", stepRegister: "Register with ECP",
    stepApply: "Apply the manifest", tokenNote: "Registration token (valid until {0}; shown only here)",
    passwordNote: "The password is filled in on this page only and never sent to ECP.",
    nodesTitle: "Nodes of {0}", agent: "Agent", hostname: "Host", connected: "Connected", lastSeen: "Last seen",
    emqxReachable: "EMQX reachable", yes: "Yes", no: "No", unknown: "—", noAgents: "No agent registered yet.",
    revoke: "Revoke", revokeConfirm: "Revoke? Click again", revoked: "Agent revoked: its credential no longer works. Register the node again to bring it back.",
    editTitle: "Edit {0}", deleteTitle: "Delete {0}",
    deleteWarn: "The managed cluster and its agents are removed from ECP. The EMQX cluster itself is not touched. Type the name to confirm:",
    historyTitle: "History of {0}", from: "From", to: "To", at: "At", cause: "Cause",
    live: "Live", reconnecting: "Reconnecting…", notAvailable: "Not available here yet",
    dashboardWhy: "Why is Enter Dashboard unavailable?", nodeStopped: "Stopped",
    system: "System management", organizations: "Organizations", users: "Users", audit: "Audit log",
    create: "Create", systemAdmin: "System admin", action: "Action", operator: "Operator", object: "Object",
    result: "Result", address: "Address", filterAction: "Filter by action (e.g. cluster, login)",
    projects: "Projects", projectsOf: "Projects of {0}", roles: "Roles", rolesOf: "Roles of {0}", role: "Role",
    organization: "Organization", project: "Project", wholeOrg: "(whole organization)",
    "role.admin": "Admin", "role.viewer": "Viewer", "role.none": "None (remove)",
    deleteConfirm: "Delete {0}? This cannot be undone.",
    logsOf: "Logs of {0}", anyLevel: "Any level", anyNode: "All nodes", searchText: "Text in the line",
    older: "Older lines", noLogs: "No log lines match. Agents collect logs when registered with --enable-log.",
    level: "Level", node: "Node", until: "Until", apply: "Apply", liveTail: "Live tail", message: "Message",
    projectLogs: "Project logs", cluster: "Cluster",
  },
  zh: {
    workspace: "工作台", integration: "数据集成", dataAccess: "数据接入",
    language: "语言", logout: "退出登录", login: "登录", username: "用户名", password: "密码",
    loginFailed: "用户名或密码错误", addCluster: "纳管集群", cards: "卡片", list: "列表",
    noClusters: "还没有纳管集群。请先纳管集群，再注册节点。",
    name: "名称", status: "状态", version: "EMQX 版本", edition: "版本类型", nodes: "节点",
    connections: "连接数", runningTime: "运行时长", created: "创建时间", actions: "操作",
    description: "描述", serviceAddress: "集群服务地址（EMQX Dashboard 地址）",
    registerNode: "注册节点", enterDashboard: "进入Dashboard", viewNodes: "查看节点", edit: "编辑",
    history: "状态历史", delete: "删除", logs: "日志", transfer: "转移", cancel: "取消", confirm: "确认",
    save: "保存", close: "关闭", copy: "复制", copied: "已复制",
    "status.created": "已创建", "status.registering": "注册中", "status.running": "运行中",
    "status.deleting": "删除中", "status.abnormal": "异常",
    "reason.agent_offline": "Agent 离线", "reason.emqx_unreachable": "无法访问 EMQX",
    "reason.emqx_auth_failed": "EMQX 凭证被拒绝", "reason.nodes_stopped": "节点已停止",
    "reason.unsupported_version": "版本不受支持", "reason.agent_error": "Agent 错误",
    reason: "原因", since: "开始于",
    createTitle: "纳管集群", nameRules: "1-200 个字符：字母、数字、空格、\"-\"、\"_\"；首尾不能是空格。",
    nameRequired: "请填写名称", nameTooLong: "名称超过 200 个字符", nameSpaces: "名称首尾不能是空格",
    nameChars: "只允许字母、数字、空格、\"-\" 和 \"_\"",
    guideTitle: "注册节点", platform: "注册方式", binary: "二进制包", kubernetes: "Kubernetes", arch: "CPU 架构",
    nodeConfig: "节点配置", enableLog: "采集 EMQX 日志（enableLog）", logDir: "日志目录（logDir）",
    dashboardUrl: "Dashboard 地址（dashboardUrl）", apiUrl: "API 地址（apiUrl）",
    stepDownload: "下载 EMQX Agent", stepChmod: "修改 Agent 权限", stepStart: "启动 Agent", stepRegister: "注册到 ECP",
    stepApply: "应用清单", tokenNote: "注册令牌（有效期至 {0}；仅在此显示）",
    passwordNote: "密码只在本页面填入命令，不会发送到 ECP。",
    nodesTitle: "{0} 的节点", agent: "Agent", hostname: "主机", connected: "已连接", lastSeen: "最近在线",
    emqxReachable: "可访问 EMQX", yes: "是", no: "否", unknown: "—", noAgents: "还没有注册节点。",
    revoke: "吊销", revokeConfirm: "确认吊销？再次点击", revoked: "已吊销该代理：它的凭证不再有效。重新注册节点即可恢复。",
    editTitle: "编辑 {0}", deleteTitle: "删除 {0}",
    deleteWarn: "将从 ECP 移除该纳管集群及其 Agent，不会改动 EMQX 集群本身。请输入集群名称确认：",
    historyTitle: "{0} 的状态历史", from: "从", to: "到", at: "时间", cause: "原因",
    live: "实时", reconnecting: "正在重连…", notAvailable: "暂不可用",
    dashboardWhy: "为什么无法进入 Dashboard？", nodeStopped: "已停止",
    system: "系统管理", organizations: "组织", users: "用户", audit: "操作审计",
    create: "创建", systemAdmin: "系统管理员", action: "操作", operator: "操作人", object: "对象",
    result: "结果", address: "地址", filterAction: "按操作筛选（如 cluster、login）",
    projects: "项目", projectsOf: "{0} 的项目", roles: "角色", rolesOf: "{0} 的角色", role: "角色",
    organization: "组织", project: "项目", wholeOrg: "（整个组织）",
    "role.admin": "管理员", "role.viewer": "只读成员", "role.none": "无（移除）",
    deleteConfirm: "删除 {0}？此操作不可撤销。",
    logsOf: "{0} 的日志", anyLevel: "全部级别", anyNode: "全部节点", searchText: "日志内容",
    older: "更早的日志", noLogs: "没有匹配的日志。注册时使用 --enable-log 的 Agent 才会采集日志。",
    level: "级别", node: "节点", until: "截止", apply: "查询", liveTail: "实时追踪", message: "内容",
    projectLogs: "项目日志", cluster: "集群",
  },
};

let lang = localStorage.getItem("ecp.lang") || ((navigator.language || "en").startsWith("zh") ? "zh" : "en");
if (!STRINGS[lang]) lang = "en";

export function getLang() { return lang; }

export function setLang(l) {
  lang = STRINGS[l] ? l : "en";
  localStorage.setItem("ecp.lang", lang);
  document.documentElement.lang = lang === "zh" ? "zh-CN" : "en";
}

/** Translate `key`, filling {0}, {1}… with `args` (plain text). */
export function t(key, ...args) {
  const s = (STRINGS[lang] && STRINGS[lang][key]) ?? STRINGS.en[key] ?? key;
  return s.replace(/\{(\d+)\}/g, (_, i) => String(args[Number(i)] ?? ""));
}
