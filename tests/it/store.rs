//! One conformance suite for every store back end: the embedded one and
//! Redis (a real redis-server). Each step says what it tries.

use crate::redis_server::RedisServer;
use ecp::store::*;
use ecp_actors::model::*;
use std::sync::Arc;

fn cluster(id: &str, project: &str, name: &str) -> ClusterRecord {
    ClusterRecord::created(id.into(), "default".into(), project.into(), name.into(), 1)
}

fn event(c: &ClusterRecord, to: Status) -> ClusterEvent {
    ClusterEvent {
        cluster_id: c.id.clone(),
        revision: c.revision,
        at: 1,
        from: Status::Created,
        to,
        reason: None,
        cause: "test".into(),
    }
}

fn agent(id: &str, cluster: &str, node_id: &str, node_key: &str) -> AgentRecord {
    AgentRecord {
        id: id.into(),
        cluster_id: cluster.into(),
        node_id: node_id.into(),
        node_key: node_key.into(),
        node_name: "emqx@n".into(),
        hostname: "h".into(),
        machine_id: "m".into(),
        agent_version: "1".into(),
        dashboard_url: "http://x".into(),
        log_collection: LogCollection {
            enabled: false,
            dir: String::new(),
        },
        emqx_reachable: true,
        created_at: 5,
        last_seen: 5,
    }
}

fn cred(cluster: &str, agent: &str) -> TokenRecord {
    TokenRecord {
        kind: TokenKind::Agent {
            cluster_id: cluster.into(),
            agent_id: agent.into(),
        },
        created_at: 1,
        expires_at: None,
    }
}

async fn conformance(store: SharedStore) {
    // Users: unique names.
    let u = UserRecord {
        id: "u1".into(),
        username: "ann".into(),
        password_hash: "h".into(),
        system_admin: false,
        created_at: 1,
    };
    store.create_user(&u).await.expect("create user");
    assert!(matches!(
        store
            .create_user(&UserRecord {
                id: "u2".into(),
                ..u.clone()
            })
            .await,
        Err(StoreError::Exists)
    ));
    assert_eq!(
        store.user_by_name("ann").await.expect("by name"),
        Some(u.clone())
    );
    assert_eq!(store.user_count().await.expect("count"), 1);

    // Orgs and projects.
    store
        .put_org(&OrgRecord {
            id: "o".into(),
            name: "o".into(),
            created_at: 1,
        })
        .await
        .expect("org");
    store
        .put_project(&ProjectRecord {
            id: "p".into(),
            org_id: "o".into(),
            name: "p".into(),
            created_at: 1,
        })
        .await
        .expect("project");
    assert_eq!(store.projects("o").await.expect("projects").len(), 1);
    assert_eq!(store.orgs().await.expect("orgs").len(), 1);

    // Clusters: unique names per project, fenced updates, history in order.
    let mut c = cluster("c1", "p", "alpha");
    store
        .create_cluster(&c, &event(&c, Status::Created))
        .await
        .expect("create");
    let c2 = cluster("c2", "p", "alpha");
    assert!(matches!(
        store
            .create_cluster(&c2, &event(&c2, Status::Created))
            .await,
        Err(StoreError::NameTaken(_))
    ));
    let c3 = cluster("c3", "other", "alpha");
    store
        .create_cluster(&c3, &event(&c3, Status::Created))
        .await
        .expect("same name, other project");
    let old_rev = c.revision;
    c.revision = 2;
    c.status = Status::Registering;
    store
        .update_cluster(&c, old_rev, &[event(&c, Status::Registering)])
        .await
        .expect("update");
    // A stale writer (expects revision 1 again) is rejected and changes nothing.
    let mut stale = c.clone();
    stale.revision = 3;
    stale.status = Status::Abnormal;
    assert!(matches!(
        store.update_cluster(&stale, 1, &[]).await,
        Err(StoreError::RevisionConflict {
            expected: 1,
            found: 2
        })
    ));
    assert_eq!(
        store.cluster("c1").await.expect("get").map(|c| c.status),
        Some(Status::Registering)
    );
    // Rename: onto a taken name refused; to a free name frees the old one.
    let c4 = cluster("c4", "p", "beta");
    store
        .create_cluster(&c4, &event(&c4, Status::Created))
        .await
        .expect("beta");
    let mut renamed = c.clone();
    renamed.name = "beta".into();
    renamed.revision = 3;
    assert!(matches!(
        store.update_cluster(&renamed, 2, &[]).await,
        Err(StoreError::NameTaken(_))
    ));
    renamed.name = "gamma".into();
    store
        .update_cluster(&renamed, 2, &[])
        .await
        .expect("rename");
    let c5 = cluster("c5", "p", "alpha");
    store
        .create_cluster(&c5, &event(&c5, Status::Created))
        .await
        .expect("alpha is free again");
    let names: Vec<String> = store
        .clusters_in_project("p")
        .await
        .expect("list")
        .into_iter()
        .map(|c| c.name)
        .collect();
    assert_eq!(names.len(), 3, "{names:?}");
    let history: Vec<Status> = store
        .events("c1")
        .await
        .expect("events")
        .into_iter()
        .map(|e| e.to)
        .collect();
    assert_eq!(history, vec![Status::Created, Status::Registering]);
    assert_eq!(store.all_clusters().await.expect("all").len(), 4);

    // Tokens: by hash, with expiry, revocable per cluster.
    let reg = TokenRecord {
        kind: TokenKind::Registration {
            cluster_id: "c1".into(),
        },
        created_at: 1,
        expires_at: Some(now_ms() + 60_000),
    };
    store.put_token(&[1; 32], &reg).await.expect("token");
    store.put_token(&[2; 32], &reg).await.expect("token");
    assert_eq!(
        store.token(&[1; 32], now_ms()).await.expect("get"),
        Some(reg.clone())
    );
    assert_eq!(
        store
            .token(&[1; 32], now_ms() + 120_000)
            .await
            .expect("get"),
        None,
        "expired"
    );
    assert_eq!(
        store.token(&[9; 32], now_ms()).await.expect("get"),
        None,
        "unknown"
    );
    store.delete_token(&[2; 32]).await.expect("delete");
    assert_eq!(store.token(&[2; 32], now_ms()).await.expect("get"), None);
    store.put_token(&[3; 32], &reg).await.expect("token");
    assert_eq!(
        store
            .revoke_registration_tokens("c1")
            .await
            .expect("revoke"),
        2
    );
    assert_eq!(store.token(&[1; 32], now_ms()).await.expect("get"), None);

    // Agents: register, idempotent retry, node taken elsewhere.
    let r = store
        .register_agent(
            &agent("a1", "c1", "inst-1", "emqx@n|m"),
            &[10; 32],
            &cred("c1", "a1"),
        )
        .await
        .expect("register");
    assert!(!r.reused);
    let again = store
        .register_agent(
            &agent("a-new", "c1", "inst-1", "emqx@n|m"),
            &[11; 32],
            &cred("c1", "a-new"),
        )
        .await
        .expect("retry");
    assert!(again.reused);
    assert_eq!(again.agent.id, "a1", "same agent id on retry");
    assert_eq!(again.revoked_credential, Some([10; 32]));
    assert_eq!(
        store.token(&[10; 32], now_ms()).await.expect("get"),
        None,
        "old credential revoked"
    );
    match store
        .token(&[11; 32], now_ms())
        .await
        .expect("get")
        .map(|t| t.kind)
    {
        Some(TokenKind::Agent { agent_id, .. }) => {
            assert_eq!(agent_id, "a1", "credential points at the kept id")
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        store.register_agent(&agent("a2", "c4", "inst-2", "emqx@n|m"), &[12; 32], &cred("c4", "a2")).await,
        Err(StoreError::NodeTaken { cluster_id }) if cluster_id == "c1"
    ));
    assert_eq!(
        store.agents_of_cluster("c1").await.expect("agents").len(),
        1
    );
    let mut a = store.agent("a1").await.expect("agent").expect("exists");
    a.last_seen = 99;
    store.update_agent(&a).await.expect("update agent");
    assert_eq!(
        store.agent("a1").await.expect("agent").map(|a| a.last_seen),
        Some(99)
    );
    assert!(
        matches!(
            store.update_agent(&agent("ghost", "c1", "x", "y")).await,
            Err(StoreError::NotFound)
        ),
        "no resurrection"
    );

    // Remove a cluster: gone, tombstoned, agents gone, their credential kept (→ 410).
    store.remove_cluster("c1").await.expect("remove");
    assert_eq!(store.cluster("c1").await.expect("get"), None);
    assert!(store.cluster_deleted("c1").await.expect("tomb"));
    assert!(!store.cluster_deleted("c4").await.expect("tomb"));
    assert_eq!(store.agent("a1").await.expect("agent"), None);
    assert!(
        store
            .token(&[11; 32], now_ms())
            .await
            .expect("get")
            .is_some(),
        "credential kept to answer 410"
    );
    // The node is free again for another cluster.
    store
        .register_agent(
            &agent("a3", "c4", "inst-3", "emqx@n|m"),
            &[13; 32],
            &cred("c4", "a3"),
        )
        .await
        .expect("node free");
    store.remove_agent("a3").await.expect("remove agent");
    assert_eq!(
        store.agents_of_cluster("c4").await.expect("agents").len(),
        0
    );
    assert_eq!(
        store.token(&[13; 32], now_ms()).await.expect("get"),
        None,
        "revoked agent's credential is gone"
    );
}

fn session(user: &str, ttl_ms: u64) -> TokenRecord {
    TokenRecord {
        kind: TokenKind::Session {
            user_id: user.into(),
        },
        created_at: now_ms(),
        expires_at: Some(now_ms() + ttl_ms),
    }
}

fn membership(user: &str, org: &str, project: &str, role: Role) -> Membership {
    Membership {
        user_id: user.into(),
        org_id: org.into(),
        project_id: project.into(),
        role,
    }
}

/// Memberships and sessions: what a user may do follows their current rights.
async fn authority_conformance(store: SharedStore) {
    let user = |id: &str, name: &str| UserRecord {
        id: id.into(),
        username: name.into(),
        password_hash: "old".into(),
        system_admin: false,
        created_at: 1,
    };
    store.create_user(&user("m1", "mia")).await.expect("user");
    store.create_user(&user("m2", "max")).await.expect("user");

    // Removing an org membership takes the user's project roles in that org
    // along, and nothing else (another org, a similar-looking org id).
    for m in [
        membership("m1", "orgA", "", Role::Viewer),
        membership("m1", "orgA", "p1", Role::Admin),
        membership("m1", "orgA", "p2", Role::Viewer),
        membership("m1", "orgAB", "", Role::Viewer),
        membership("m1", "orgAB", "q1", Role::Viewer),
        membership("m2", "orgA", "", Role::Viewer),
        membership("m2", "orgA", "p1", Role::Viewer),
    ] {
        store.put_membership(&m).await.expect("membership");
    }
    // A project membership alone goes alone.
    store
        .remove_membership("m1", "orgA", "p2")
        .await
        .expect("remove project role");
    assert_eq!(store.memberships("m1").await.expect("ms").len(), 4);
    store
        .remove_membership("m1", "orgA", "")
        .await
        .expect("remove org role");
    let mut left: Vec<(String, String)> = store
        .memberships("m1")
        .await
        .expect("ms")
        .into_iter()
        .map(|m| (m.org_id, m.project_id))
        .collect();
    left.sort();
    assert_eq!(
        left,
        [
            ("orgAB".to_string(), String::new()),
            ("orgAB".to_string(), "q1".to_string())
        ],
        "only orgA's roles went"
    );
    assert_eq!(
        store.memberships("m2").await.expect("ms").len(),
        2,
        "another user's roles stay"
    );

    // Sessions are indexed per user: all but one end; others' stay.
    for (h, u) in [
        ([41; 32], "m1"),
        ([42; 32], "m1"),
        ([43; 32], "m1"),
        ([44; 32], "m2"),
    ] {
        store
            .put_token(&h, &session(u, 60_000))
            .await
            .expect("session");
    }
    // A registration token is no session.
    store
        .put_token(
            &[45; 32],
            &TokenRecord {
                kind: TokenKind::Registration {
                    cluster_id: "c4".into(),
                },
                created_at: 1,
                expires_at: Some(now_ms() + 60_000),
            },
        )
        .await
        .expect("token");
    // A logged-out session is out of the index too.
    store.delete_token(&[43; 32]).await.expect("logout");
    assert_eq!(
        store
            .delete_user_sessions("m1", Some(&[41; 32]))
            .await
            .expect("end others"),
        1
    );
    let alive = |h: [u8; 32]| {
        let store = store.clone();
        async move { store.token(&h, now_ms()).await.expect("get").is_some() }
    };
    assert!(alive([41; 32]).await, "the kept session");
    assert!(!alive([42; 32]).await, "ended");
    assert!(alive([44; 32]).await, "another user's session");
    assert!(alive([45; 32]).await, "not a session");

    // A new password and the end of the other sessions are one step.
    store
        .put_token(&[46; 32], &session("m1", 60_000))
        .await
        .expect("session");
    assert_eq!(
        store
            .set_password("m1", "new", Some(&[46; 32]))
            .await
            .expect("set password"),
        1
    );
    assert_eq!(
        store
            .user("m1")
            .await
            .expect("user")
            .map(|u| u.password_hash),
        Some("new".to_string())
    );
    assert!(!alive([41; 32]).await && alive([46; 32]).await);
    assert!(matches!(
        store.set_password("nobody", "x", None).await,
        Err(StoreError::NotFound)
    ));
    // Logout everywhere: nothing kept.
    store
        .put_token(&[47; 32], &session("m1", 60_000))
        .await
        .expect("session");
    assert_eq!(
        store.delete_user_sessions("m1", None).await.expect("all"),
        2
    );
    assert!(!alive([46; 32]).await && !alive([47; 32]).await);
    assert_eq!(
        store
            .delete_user_sessions("m1", None)
            .await
            .expect("none left"),
        0
    );

    // Deleting a user ends its sessions; it cannot come back through a
    // password change.
    assert!(alive([44; 32]).await);
    store.delete_user("m2").await.expect("delete");
    assert!(!alive([44; 32]).await, "a deleted user's session ends");
    assert!(store.memberships("m2").await.expect("ms").is_empty());
    assert!(matches!(
        store.set_password("m2", "x", None).await,
        Err(StoreError::NotFound)
    ));
    assert_eq!(store.user("m2").await.expect("user"), None);
}

/// The audit log keeps what its retention allows: by age, and the newest
/// by count.
async fn audit_retention_conformance(store: SharedStore) {
    let rec = |at: u64, n: u64| AuditRecord {
        id: at * 1000 + n,
        at,
        actor_id: "user:u".into(),
        actor_name: "u".into(),
        action: "login".into(),
        object_type: String::new(),
        object_id: String::new(),
        object_name: String::new(),
        org_id: String::new(),
        project_id: String::new(),
        result: "ok".into(),
        address: "127.0.0.1".into(),
        details: format!("{at}/{n}"),
    };
    for (at, n) in [
        (1000, 0),
        (2000, 0),
        (2000, 1),
        (3000, 0),
        (4000, 0),
        (5000, 0),
    ] {
        store.append_audit(&rec(at, n)).await.expect("append");
    }
    let kept = |store: SharedStore| async move {
        let (v, total) = store
            .audit(&AuditQuery {
                size: 100,
                ..Default::default()
            })
            .await
            .expect("audit");
        assert_eq!(v.len(), total);
        v.into_iter().map(|r| r.details).collect::<Vec<_>>()
    };
    assert_eq!(store.purge_audit(0, 0).await.expect("nothing"), 0);
    assert_eq!(
        store.purge_audit(3000, 0).await.expect("by age"),
        3,
        "older than 3000 go"
    );
    assert_eq!(kept(store.clone()).await, ["5000/0", "4000/0", "3000/0"]);
    assert_eq!(store.purge_audit(0, 2).await.expect("by count"), 1);
    assert_eq!(kept(store.clone()).await, ["5000/0", "4000/0"]);
    assert_eq!(store.purge_audit(3000, 2).await.expect("again"), 0);
}

#[tokio::test]
async fn embedded_store_conformance() {
    let dir = tempfile::tempdir().expect("tmp");
    let store: SharedStore =
        Arc::new(ecp::store::embedded::EmbeddedStore::open(dir.path()).expect("open"));
    conformance(store.clone()).await;
    authority_conformance(store.clone()).await;
    audit_retention_conformance(store.clone()).await;
    history_conformance(store.clone()).await;
    credential_conformance(store.clone()).await;
    log_conformance(store).await;
}

#[tokio::test]
async fn redis_store_conformance() {
    let redis = RedisServer::start().await;
    let store: SharedStore = Arc::new(
        ecp::store::redis::RedisStore::connect(&redis.url())
            .await
            .expect("connect"),
    );
    conformance(store.clone()).await;
    authority_conformance(store.clone()).await;
    audit_retention_conformance(store.clone()).await;
    history_conformance(store.clone()).await;
    credential_conformance(store.clone()).await;
    log_conformance(store).await;
}

fn line(file: u64, offset: u64, level: u8, text: &str) -> ecp_protocol::LogLine {
    ecp_protocol::LogLine {
        file,
        offset,
        time_us: 1_000_000 + offset,
        level,
        message: text.into(),
        fields: String::new(),
        raw: format!("[{level}] {text}"),
    }
}

/// Credential rotation: a fresh credential stored with an expiry becomes
/// the agent's only one, without expiry; the one before stops working.
async fn credential_conformance(store: SharedStore) {
    let c = cluster("R", "pr", "rotating");
    store
        .create_cluster(&c, &event(&c, Status::Created))
        .await
        .expect("create");
    let rec = |agent: &str, expires_at| TokenRecord {
        kind: TokenKind::Agent {
            cluster_id: "R".into(),
            agent_id: agent.into(),
        },
        created_at: 1,
        expires_at,
    };
    let (old, new, other) = ([1u8; 32], [2u8; 32], [3u8; 32]);
    let a = agent("ra", "R", "inst-ra", "emqx@ra|m");
    store
        .register_agent(&a, &old, &rec("ra", None))
        .await
        .expect("register");
    store
        .put_token(&new, &rec("ra", Some(now_ms() + 3_600_000)))
        .await
        .expect("put");
    store
        .put_token(&other, &rec("someone-else", Some(now_ms() + 3_600_000)))
        .await
        .expect("put");
    assert!(
        matches!(
            store.adopt_agent_credential("ra", &other).await,
            Err(StoreError::NotFound)
        ),
        "another agent's token is not adopted"
    );
    assert!(matches!(
        store.adopt_agent_credential("ra", &[9u8; 32]).await,
        Err(StoreError::NotFound)
    ));
    store
        .adopt_agent_credential("ra", &new)
        .await
        .expect("adopt");
    assert!(
        store.token(&old, 2).await.expect("old").is_none(),
        "the old credential stopped working"
    );
    let now = store
        .token(&new, 2)
        .await
        .expect("new")
        .expect("the new one works");
    assert_eq!(now.expires_at, None);
    // Removing the agent takes the adopted credential along.
    store.remove_agent("ra").await.expect("remove");
    assert!(store.token(&new, 2).await.expect("gone").is_none());
}

/// A cluster's history keeps its newest `HISTORY_PER_CLUSTER` entries:
/// transitions follow agents' reports, and a flapping agent must not grow
/// it for ever.
async fn history_conformance(store: SharedStore) {
    let mut c = cluster("H", "ph", "flapping");
    store
        .create_cluster(&c, &event(&c, Status::Created))
        .await
        .expect("create");
    let keep = ecp_actors::store::HISTORY_PER_CLUSTER;
    for _ in 0..keep + 5 {
        let old = c.revision;
        c.revision += 1;
        let to = if c.revision % 2 == 0 {
            Status::Running
        } else {
            Status::Abnormal
        };
        store
            .update_cluster(&c, old, &[event(&c, to)])
            .await
            .expect("update");
    }
    let h = store.events("H").await.expect("events");
    assert_eq!(h.len(), keep);
    assert_eq!(
        h.last().map(|e| e.revision),
        Some(c.revision),
        "the newest kept"
    );
    assert_eq!(
        h.first().map(|e| e.revision),
        Some(c.revision - keep as u64 + 1)
    );
}

async fn log_conformance(store: SharedStore) {
    let q = |f: &dyn Fn(&mut LogQuery)| {
        let mut q = LogQuery {
            limit: 100,
            ..Default::default()
        };
        f(&mut q);
        q
    };
    // Two agents (nodes) of one cluster append; a resend after a lost ack
    // (same file, same offsets) and an overlapping batch store nothing twice.
    let batch: Vec<_> = (0..5)
        .map(|i| line(7, i * 10, (i % 8) as u8, &format!("n1 line {i}")))
        .collect();
    assert_eq!(
        store
            .append_logs("L", "a1", "emqx@n1", &batch, 100)
            .await
            .expect("append"),
        5
    );
    assert_eq!(
        store
            .append_logs("L", "a1", "emqx@n1", &batch, 100)
            .await
            .expect("resend"),
        0
    );
    let more: Vec<_> = (3..8)
        .map(|i| line(7, i * 10, 4, &format!("n1 line {i}")))
        .collect();
    assert_eq!(
        store
            .append_logs("L", "a1", "emqx@n1", &more, 100)
            .await
            .expect("overlap"),
        3
    );
    // The same offsets in another file (a reused wrap file) are new lines.
    let reused: Vec<_> = (0..2)
        .map(|i| line(8, i * 10, 6, &format!("n1 reused {i}")))
        .collect();
    assert_eq!(
        store
            .append_logs("L", "a1", "emqx@n1", &reused, 100)
            .await
            .expect("reuse"),
        2
    );
    let other: Vec<_> = (0..3)
        .map(|i| line(7, i * 10, 2, &format!("n2 line {i}")))
        .collect();
    assert_eq!(
        store
            .append_logs("L", "a2", "emqx@n2", &other, 100)
            .await
            .expect("agent 2"),
        3
    );
    // Newest first, everything once.
    let all = store.logs("L", &q(&|_| {})).await.expect("read");
    let texts: Vec<&str> = all.data.iter().map(|l| l.message.as_str()).collect();
    assert_eq!(
        texts,
        [
            "n2 line 2",
            "n2 line 1",
            "n2 line 0",
            "n1 reused 1",
            "n1 reused 0",
            "n1 line 7",
            "n1 line 6",
            "n1 line 5",
            "n1 line 4",
            "n1 line 3",
            "n1 line 2",
            "n1 line 1",
            "n1 line 0"
        ]
    );
    assert_eq!(all.next, None);
    // Filters: level at least, node, time, text; paging with a cursor.
    let errs = store
        .logs("L", &q(&|q| q.min_level = Some(6)))
        .await
        .expect("level");
    assert!(
        errs.data.iter().all(|l| l.level >= 6) && errs.data.len() == 2,
        "{errs:?}"
    );
    let n2 = store
        .logs("L", &q(&|q| q.node = Some("emqx@n2".into())))
        .await
        .expect("node");
    assert_eq!(n2.data.len(), 3);
    let window = store
        .logs(
            "L",
            &q(&|q| {
                q.since_us = Some(1_000_010);
                q.until_us = Some(1_000_020);
            }),
        )
        .await
        .expect("time");
    assert!(
        window
            .data
            .iter()
            .all(|l| (1_000_010..=1_000_020).contains(&l.time_us))
            && window.data.len() == 5,
        "{window:?}"
    );
    let text = store
        .logs("L", &q(&|q| q.text = Some("REUSED".into())))
        .await
        .expect("text");
    assert_eq!(text.data.len(), 2);
    let p1 = store.logs("L", &q(&|q| q.limit = 4)).await.expect("page 1");
    assert_eq!(p1.data.len(), 4);
    let p2 = store
        .logs(
            "L",
            &q(&|q| {
                q.limit = 100;
                q.before = p1.next;
            }),
        )
        .await
        .expect("page 2");
    assert_eq!(p2.data.len(), 9);
    assert_eq!(p2.data[0].message, "n1 reused 0");
    // Live tail: what came after a seq, oldest first.
    let newest = all.data[0].seq;
    let tail = store
        .logs("L", &q(&|q| q.after = Some(newest - 2)))
        .await
        .expect("tail");
    let texts: Vec<&str> = tail.data.iter().map(|l| l.message.as_str()).collect();
    assert_eq!(texts, ["n2 line 1", "n2 line 2"]);
    // The cap keeps the newest lines.
    let flood: Vec<_> = (0..30)
        .map(|i| line(9, i, 3, &format!("flood {i}")))
        .collect();
    store
        .append_logs("L", "a1", "emqx@n1", &flood, 20)
        .await
        .expect("flood");
    let capped = store.logs("L", &q(&|_| {})).await.expect("capped");
    assert_eq!(capped.data.len(), 20);
    assert_eq!(capped.data[0].message, "flood 29");
    assert_eq!(capped.data[19].message, "flood 10");
    // A scan budget: a search reads at most that many stored lines, says
    // where it stopped (also with no match), and following the cursors
    // finds every match once, in either direction.
    let hay: Vec<_> = (0..30)
        .map(|i| {
            let text = if [2, 5, 9].contains(&i) {
                format!("needle {i}")
            } else {
                format!("hay {i}")
            };
            line(3, i, 3, &text)
        })
        .collect();
    store
        .append_logs("B", "a1", "emqx@n1", &hay, 100)
        .await
        .expect("append");
    for (limit, newest_first) in [(100, true), (2, true), (100, false), (1, false)] {
        let mut query = q(&|q| {
            q.text = Some("needle".into());
            q.scan_budget = Some(7);
            q.limit = limit;
            q.after = (!newest_first).then_some(0);
        });
        let mut found = Vec::new();
        let mut pages = Vec::new();
        loop {
            let p = store.logs("B", &query).await.expect("search");
            assert!(p.scanned <= 7, "{p:?}");
            found.extend(p.data.iter().map(|l| l.message.clone()));
            pages.push((p.data.len(), p.partial));
            match p.next {
                Some(n) if newest_first => query.before = Some(n),
                Some(n) => query.after = Some(n),
                None => break,
            }
            assert!(pages.len() < 40, "no progress: {pages:?}");
        }
        let mut want = vec!["needle 9", "needle 5", "needle 2"];
        if !newest_first {
            want.reverse();
        }
        assert_eq!(
            found, want,
            "limit {limit}, newest first {newest_first}: {pages:?}"
        );
        if newest_first {
            assert_eq!(
                pages[0],
                (0, true),
                "the newest 7 lines hold no match: empty, partial, with a cursor"
            );
        }
    }
    // De-duplication marks are bounded per cluster: an agent inventing file
    // fingerprints pushes out the least recently moved marks, never grows
    // them for ever. A recent file stays de-duplicated; the oldest, once
    // pushed out, would be stored again.
    let cap = ecp_actors::store::LOG_MARKS_PER_CLUSTER as u64;
    for chunk in (0..cap + 8).collect::<Vec<_>>().chunks(8) {
        let batch: Vec<_> = chunk.iter().map(|f| line(10_000 + f, 0, 1, "m")).collect();
        assert_eq!(
            store
                .append_logs("M", "a1", "n", &batch, 100_000)
                .await
                .expect("append"),
            chunk.len()
        );
    }
    let resend = |f: u64| vec![line(10_000 + f, 0, 1, "m")];
    assert_eq!(
        store
            .append_logs("M", "a1", "n", &resend(cap + 7), 100_000)
            .await
            .expect("recent"),
        0,
        "a recent file's mark is kept"
    );
    assert_eq!(
        store
            .append_logs("M", "a1", "n", &resend(0), 100_000)
            .await
            .expect("oldest"),
        1,
        "the least recently moved mark went"
    );
    // A resend stores nothing but moves its marks: they become the most
    // recently moved, in batch order, and the least recently moved mark
    // still goes first once new files push marks out.
    let files = |fs: &[u64]| fs.iter().map(|&f| line(f, 0, 1, "t")).collect::<Vec<_>>();
    assert_eq!(
        store
            .append_logs("T", "a1", "n", &files(&[1, 2]), 100_000)
            .await
            .expect("two files"),
        2
    );
    for f in [2, 1] {
        assert_eq!(
            store
                .append_logs("T", "a1", "n", &files(&[f]), 100_000)
                .await
                .expect("resend"),
            0
        );
    }
    for chunk in (100..100 + cap - 1).collect::<Vec<_>>().chunks(8) {
        store
            .append_logs("T", "a1", "n", &files(chunk), 100_000)
            .await
            .expect("push out");
    }
    assert_eq!(
        store
            .append_logs("T", "a1", "n", &files(&[1]), 100_000)
            .await
            .expect("file 1"),
        0,
        "file 1, resent last, is kept"
    );
    assert_eq!(
        store
            .append_logs("T", "a1", "n", &files(&[2]), 100_000)
            .await
            .expect("file 2"),
        1,
        "file 2, moved least recently, went"
    );
    // Two writers with the same batch at once (an agent's old session still
    // storing while its new one, maybe on another node, resends): every line
    // is stored once.
    for round in 0..20u64 {
        let batch: Vec<_> = (0..10)
            .map(|i| line(5, round * 10 + i, 1, &format!("w {round} {i}")))
            .collect();
        let (a, b) = tokio::join!(
            store.append_logs("W", "a1", "n", &batch, 100_000),
            store.append_logs("W", "a1", "n", &batch, 100_000)
        );
        assert_eq!(
            a.expect("writer a") + b.expect("writer b"),
            10,
            "round {round}"
        );
    }
    let w = store
        .logs("W", &q(&|q| q.limit = 1000))
        .await
        .expect("read");
    let mut texts: Vec<&str> = w.data.iter().map(|l| l.message.as_str()).collect();
    texts.dedup();
    assert_eq!(texts.len(), 200, "each line once");
    // Deleting the cluster deletes its logs.
    store
        .create_cluster(
            &cluster("L", "p9", "logs"),
            &event(&cluster("L", "p9", "logs"), Status::Created),
        )
        .await
        .expect("create");
    store.remove_cluster("L").await.expect("remove");
    assert!(store
        .logs("L", &q(&|_| {}))
        .await
        .expect("gone")
        .data
        .is_empty());
}

#[tokio::test]
async fn redis_store_keeps_everything_across_a_redis_restart_with_aof() {
    let mut redis = RedisServer::start().await;
    let store: SharedStore = Arc::new(
        ecp::store::redis::RedisStore::connect(&redis.url())
            .await
            .expect("connect"),
    );
    let c = cluster("k1", "p", "kept");
    store
        .create_cluster(&c, &event(&c, Status::Created))
        .await
        .expect("create");
    redis.restart().await;
    // The connection manager reconnects by itself; the record is still there.
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    let found = loop {
        match store.cluster("k1").await {
            Ok(v) => break v,
            Err(_) if tokio::time::Instant::now() < deadline => {
                tokio::time::sleep(std::time::Duration::from_millis(50)).await
            }
            Err(e) => panic!("no reconnect: {e}"),
        }
    };
    assert_eq!(found.map(|c| c.name), Some("kept".to_string()));
}

#[tokio::test]
async fn ecp_serve_with_redis_runs_the_lifecycle_and_keeps_it_across_restarts() {
    use crate::harness::*;
    let redis = RedisServer::start().await;
    let mut server = Server::start_with(&[("ECP_REDIS", &redis.url())]).await;
    let api = server.api().await;
    let mut events = api.events().await;
    let (id, reg, s) = running_cluster(&server, &api, &mut events, "on redis", "emqx@r").await;
    let history = api.history(&id).await;
    drop(s);
    server.restart().await;
    assert!(
        server.log_text().contains("redis"),
        "ran on the Redis back end"
    );
    let api = server.api().await;
    let (status, c) = api.cluster(&id).await;
    assert_eq!(status, 200, "{c}");
    assert_eq!(c["name"], "on redis");
    assert_eq!(api.history(&id).await[..history.len()], history[..]);
    ecp_testkit::Session::connect(&server.base, &reg.token, &reg.agent_id, None)
        .await
        .expect("credential kept in Redis");
}

// ------------------------------------------------------------ alerting

use ecp_actors::alerting::*;

/// Small caps so trimming shows without writing thousands.
fn small_caps() -> Caps {
    Caps {
        raw_points: 10,
        rollup_points: 3,
        alerts_per_project: 3,
        deliveries_per_channel: 3,
    }
}

fn rule(id: &str, project: &str, name: &str) -> AlertRule {
    AlertRule {
        id: id.into(),
        org_id: "o".into(),
        project_id: project.into(),
        name: name.into(),
        kind: AlertKind::AgentOffline,
        cluster_ids: vec![],
        threshold: None,
        unit: ThresholdUnit::Percent,
        reason_code: None,
        alarm_pattern: None,
        for_secs: 0,
        recover_secs: 0,
        severity: Severity::Warning,
        channel_ids: vec!["ch1".into()],
        enabled: true,
        created_at: id.len() as u64,
        updated_at: 1,
    }
}

fn channel(id: &str, project: &str) -> ChannelRecord {
    ChannelRecord {
        id: id.into(),
        org_id: "o".into(),
        project_id: project.into(),
        name: format!("channel {id}"),
        kind: ChannelKind::Webhook,
        webhook: Some(WebhookConfig {
            url: "http://127.0.0.1:1/hook".into(),
            headers: vec![("x-a".into(), "b".into())],
            body_template: None,
            secret: "s".into(),
        }),
        email: None,
        max_per_minute: 10,
        created_at: 1,
        updated_at: 1,
    }
}

fn alert(
    id: &str,
    project: &str,
    cluster: &str,
    started_at: u64,
    state: AlertState,
) -> AlertRecord {
    AlertRecord {
        id: id.into(),
        org_id: "o".into(),
        project_id: project.into(),
        rule_id: "r1".into(),
        rule_name: "offline".into(),
        kind: AlertKind::AgentOffline,
        cluster_id: cluster.into(),
        cluster_name: cluster.into(),
        subject: String::new(),
        severity: Severity::Critical,
        state,
        started_at,
        resolved_at: (state == AlertState::Resolved).then_some(started_at + 1),
        message: "no agent session".into(),
    }
}

fn delivery(id: &str, channel: &str, project: &str, created_at: u64, next_at: u64) -> Delivery {
    Delivery {
        id: id.into(),
        channel_id: channel.into(),
        project_id: project.into(),
        notice: Notice {
            kind: NoticeKind::Firing,
            alert_id: Some("a1".into()),
            cluster_id: "c1".into(),
            cluster: "prod".into(),
            rule: "offline".into(),
            severity: Severity::Critical,
            status: "firing".into(),
            message: "m".into(),
            started_at: 1,
            resolved_at: None,
        },
        state: DeliveryState::Pending,
        attempts: 0,
        next_at,
        created_at,
        finished_at: None,
        last_status: None,
        last_error: None,
    }
}

fn ids<T>(v: &[T], id: impl Fn(&T) -> &str) -> Vec<String> {
    v.iter().map(|x| id(x).to_string()).collect()
}

fn alert_ids(v: &[AlertRecord]) -> Vec<String> {
    ids(v, |a| &a.id)
}

fn delivery_ids(v: &[Delivery]) -> Vec<String> {
    ids(v, |d| &d.id)
}

/// Rules, channels, alerts and deliveries, on a store with
/// [`small_caps`]; `other` is a second handle on the same data (another
/// node, for Redis).
async fn alert_conformance(store: SharedStore, other: SharedStore) {
    // Rules: by project, replaced by id, moved between projects, deleted.
    for r in [
        rule("r1", "p1", "one"),
        rule("r22", "p1", "two"),
        rule("r333", "p2", "three"),
    ] {
        store.put_alert_rule(&r).await.expect("put rule");
    }
    let names = |v: Vec<AlertRule>| v.into_iter().map(|r| r.name).collect::<Vec<_>>();
    assert_eq!(
        names(store.alert_rules("p1").await.expect("rules")),
        ["one", "two"]
    );
    store
        .put_alert_rule(&rule("r1", "p1", "one, renamed"))
        .await
        .expect("replace");
    store
        .put_alert_rule(&rule("r22", "p2", "two"))
        .await
        .expect("move");
    assert_eq!(
        names(store.alert_rules("p1").await.expect("rules")),
        ["one, renamed"]
    );
    assert_eq!(
        names(store.alert_rules("p2").await.expect("rules")),
        ["two", "three"]
    );
    store.delete_alert_rule("r1").await.expect("delete");
    assert!(matches!(
        store.delete_alert_rule("r1").await,
        Err(StoreError::NotFound)
    ));
    assert_eq!(store.alert_rule("r1").await.expect("get"), None);
    assert!(store.alert_rules("p1").await.expect("rules").is_empty());
    store
        .put_alert_rule(&rule("r1", "p1", "one"))
        .await
        .expect("again");

    // Channels: the same, secrets and all fields round-trip.
    for c in [
        channel("ch1", "p1"),
        channel("ch2", "p1"),
        channel("ch3", "p2"),
    ] {
        store.put_channel(&c).await.expect("put channel");
    }
    assert_eq!(
        store.channel("ch1").await.expect("get"),
        Some(channel("ch1", "p1"))
    );
    assert_eq!(
        ids(&store.channels("p1").await.expect("channels"), |c| &c.id),
        ["ch1", "ch2"]
    );
    store
        .put_channel(&channel("ch2", "p2"))
        .await
        .expect("move");
    assert_eq!(
        ids(&store.channels("p2").await.expect("channels"), |c| &c.id),
        ["ch2", "ch3"]
    );
    assert!(matches!(
        store.delete_channel("nope").await,
        Err(StoreError::NotFound)
    ));

    // An alert fires with its deliveries in one step; the cluster's firing
    // alerts are what a new owner loads.
    let a1 = alert("a1", "p1", "c1", 100, AlertState::Firing);
    store
        .record_alert(&a1, &[delivery("d1", "ch1", "p1", 100, 100)])
        .await
        .expect("fire a1");
    store
        .record_alert(&alert("a2", "p1", "c2", 200, AlertState::Firing), &[])
        .await
        .expect("fire a2");
    assert_eq!(
        alert_ids(&store.firing_alerts_of_cluster("c1").await.expect("c1")),
        ["a1"]
    );
    assert_eq!(
        store.firing_alerts_of_cluster("c1").await.expect("c1")[0],
        a1
    );
    assert_eq!(
        delivery_ids(&store.deliveries("ch1", 10).await.expect("log")),
        ["d1"],
        "queued with the alert"
    );
    // It resolves: no longer firing for its cluster, listed as resolved.
    let mut r1 = a1.clone();
    r1.state = AlertState::Resolved;
    r1.resolved_at = Some(150);
    store
        .record_alert(&r1, &[delivery("d2", "ch1", "p1", 150, 150)])
        .await
        .expect("resolve a1");
    assert!(store
        .firing_alerts_of_cluster("c1")
        .await
        .expect("c1")
        .is_empty());
    assert_eq!(
        alert_ids(&store.alerts("p1", None, 10).await.expect("all")),
        ["a2", "a1"]
    );
    assert_eq!(
        alert_ids(
            &store
                .alerts("p1", Some(AlertState::Firing), 10)
                .await
                .expect("f")
        ),
        ["a2"]
    );
    assert_eq!(
        store
            .alerts("p1", Some(AlertState::Resolved), 10)
            .await
            .expect("r"),
        [r1.clone()]
    );
    assert_eq!(
        alert_ids(&store.alerts("p1", None, 1).await.expect("limit")),
        ["a2"]
    );
    assert!(store.alerts("p1", None, 0).await.expect("none").is_empty());
    assert!(store
        .alerts("p2", None, 10)
        .await
        .expect("other")
        .is_empty());

    // Beyond the cap (3) the oldest resolved alerts go; a firing one,
    // however old, stays.
    store
        .record_alert(&alert("old", "p1", "c3", 1, AlertState::Firing), &[])
        .await
        .expect("old firing");
    for (i, started) in [300u64, 400, 500, 600].iter().enumerate() {
        store
            .record_alert(
                &alert(&format!("r{i}"), "p1", "c1", *started, AlertState::Resolved),
                &[],
            )
            .await
            .expect("resolved");
    }
    assert_eq!(
        alert_ids(&store.alerts("p1", None, 100).await.expect("all")),
        ["r3", "r2", "r1", "a2", "old"],
        "three resolved kept (a1 and r0 were the oldest), firing ones all"
    );
    assert_eq!(
        store
            .firing_alerts_of_cluster("c3")
            .await
            .expect("c3")
            .len(),
        1
    );

    // Deliveries: claimed once until the lease lapses.
    store
        .queue_deliveries(&[delivery("d3", "ch2", "p2", 160, 5_000)])
        .await
        .expect("queue");
    let claimed = store.claim_deliveries(1_000, 500, 10).await.expect("claim");
    assert_eq!(
        delivery_ids(&claimed),
        ["d1", "d2"],
        "due ones, oldest due first"
    );
    assert!(
        claimed.iter().all(|d| d.next_at == 1_500),
        "next_at is the lease's end"
    );
    assert!(
        other
            .claim_deliveries(1_000, 500, 10)
            .await
            .expect("again")
            .is_empty(),
        "claimed: no other node takes them"
    );
    assert_eq!(
        store.deliveries("ch1", 10).await.expect("log")[1].next_at,
        1_500,
        "the stored record moved too"
    );
    let lapsed = other.claim_deliveries(1_500, 500, 1).await.expect("lapsed");
    assert_eq!(delivery_ids(&lapsed), ["d1"], "the lease lapsed; limit 1");
    // d1 delivered; d2 failed once, retried at 4 000.
    let mut d1 = lapsed[0].clone();
    d1.state = DeliveryState::Delivered;
    d1.attempts = 1;
    d1.finished_at = Some(1_600);
    d1.last_status = Some(200);
    store.finish_delivery(&d1).await.expect("finish d1");
    let mut d2 = claimed[1].clone();
    d2.attempts = 1;
    d2.next_at = 4_000;
    d2.last_status = Some(503);
    d2.last_error = Some("503".into());
    store.finish_delivery(&d2).await.expect("retry d2");
    assert!(store
        .claim_deliveries(3_999, 500, 10)
        .await
        .expect("not yet")
        .is_empty());
    let again = store.claim_deliveries(5_000, 500, 10).await.expect("due");
    assert_eq!(delivery_ids(&again), ["d2", "d3"]);
    assert_eq!(again[0].attempts, 1);
    assert_eq!(
        store.deliveries("ch1", 10).await.expect("log"),
        [
            Delivery {
                next_at: 5_500,
                ..d2.clone()
            },
            d1.clone()
        ],
        "newest first, outcomes stored"
    );
    assert_eq!(
        delivery_ids(&store.deliveries("ch1", 1).await.expect("limit")),
        ["d2"]
    );

    // A channel's log keeps its newest 3 finished deliveries; pending ones
    // are never dropped.
    for i in 0..5u64 {
        let mut d = delivery(&format!("f{i}"), "ch1", "p1", 200 + i, 0);
        d.state = DeliveryState::Delivered;
        d.finished_at = Some(300);
        store.queue_deliveries(&[d]).await.expect("finished");
    }
    assert_eq!(
        delivery_ids(&store.deliveries("ch1", 100).await.expect("log")),
        ["f4", "f3", "f2", "d2"],
        "d1 and f0, f1 trimmed; d2 is pending"
    );
    assert!(
        matches!(store.finish_delivery(&d1).await, Err(StoreError::NotFound)),
        "a trimmed delivery is not written back"
    );

    // Deleting a channel fails its pending deliveries (claimed or not).
    store.delete_channel("ch2").await.expect("delete ch2");
    assert!(matches!(
        store.delete_channel("ch2").await,
        Err(StoreError::NotFound)
    ));
    assert_eq!(store.channel("ch2").await.expect("gone"), None);
    assert_eq!(
        ids(&store.channels("p2").await.expect("p2"), |c| &c.id),
        ["ch3"]
    );
    let failed = store.deliveries("ch2", 10).await.expect("log");
    assert_eq!(delivery_ids(&failed), ["d3"]);
    assert_eq!(failed[0].state, DeliveryState::Failed);
    assert!(failed[0].last_error.is_some());
    assert!(
        !delivery_ids(
            &store
                .claim_deliveries(u64::MAX / 2, 1, 100)
                .await
                .expect("claim")
        )
        .contains(&"d3".to_string()),
        "a failed delivery is never claimed"
    );

    // Storm control counts per channel and minute, across handles.
    assert_eq!(store.count_notification("ch1", 60_000).await.expect("1"), 1);
    assert_eq!(store.count_notification("ch1", 60_000).await.expect("2"), 2);
    assert_eq!(other.count_notification("ch1", 60_000).await.expect("3"), 3);
    assert_eq!(
        other
            .count_notification("ch1", 120_000)
            .await
            .expect("next"),
        1
    );
    assert_eq!(
        store
            .count_notification("ch3", 60_000)
            .await
            .expect("other"),
        1
    );

    // Deleting a cluster resolves its firing alerts (they stay as history,
    // trimmed like any: "old" is the oldest resolved one now).
    store
        .record_alert(&alert("cz", "p1", "c3", 700, AlertState::Firing), &[])
        .await
        .expect("another on c3");
    store.remove_cluster("c3").await.expect("remove c3");
    assert!(store
        .firing_alerts_of_cluster("c3")
        .await
        .expect("c3")
        .is_empty());
    let resolved = store
        .alerts("p1", Some(AlertState::Resolved), 100)
        .await
        .expect("r");
    assert_eq!(alert_ids(&resolved), ["cz", "r3", "r2"]);
    assert!(resolved[0].resolved_at.is_some());
    assert!(
        resolved[0].message.contains("deleted"),
        "{}",
        resolved[0].message
    );
    assert_eq!(
        alert_ids(
            &store
                .alerts("p1", Some(AlertState::Firing), 100)
                .await
                .expect("f")
        ),
        ["a2"]
    );

    // Deleting a project deletes its rules, channels, alerts, deliveries.
    store
        .queue_deliveries(&[delivery("d9", "ch1", "p1", 900, 0)])
        .await
        .expect("pending");
    store.delete_project("p1").await.expect("delete p1");
    assert!(store.alert_rules("p1").await.expect("rules").is_empty());
    assert_eq!(store.alert_rule("r1").await.expect("rule"), None);
    assert!(store.channels("p1").await.expect("channels").is_empty());
    assert_eq!(store.channel("ch1").await.expect("channel"), None);
    assert!(store
        .alerts("p1", None, 100)
        .await
        .expect("alerts")
        .is_empty());
    assert!(store
        .firing_alerts_of_cluster("c2")
        .await
        .expect("c2")
        .is_empty());
    assert!(store.deliveries("ch1", 100).await.expect("log").is_empty());
    assert!(
        store
            .claim_deliveries(u64::MAX / 2, 1, 100)
            .await
            .expect("claim")
            .is_empty(),
        "its pending deliveries are gone"
    );
    assert_eq!(
        names(store.alert_rules("p2").await.expect("p2 kept")),
        ["two", "three"]
    );
    assert_eq!(
        ids(&store.channels("p2").await.expect("p2"), |c| &c.id),
        ["ch3"]
    );
    assert_eq!(
        delivery_ids(&store.deliveries("ch2", 10).await.expect("p2 log")),
        ["d3"]
    );
}

/// Two nodes claim concurrently: each pending delivery is handed out once.
async fn concurrent_claims(store: SharedStore, other: SharedStore) {
    let batch: Vec<Delivery> = (0..60u64)
        .map(|i| delivery(&format!("cc{i:02}"), "cc", "pc", i, i))
        .collect();
    store.queue_deliveries(&batch).await.expect("queue");
    let claimer = |s: SharedStore| async move {
        let mut got = Vec::new();
        for _ in 0..100 {
            let v = s.claim_deliveries(1_000, 60_000, 7).await.expect("claim");
            if v.is_empty() {
                return got;
            }
            got.extend(delivery_ids(&v));
        }
        panic!("claims never ran out: the same deliveries were handed out again");
    };
    let (a, b) = tokio::join!(
        tokio::spawn(claimer(store.clone())),
        tokio::spawn(claimer(other.clone()))
    );
    let (a, b) = (a.expect("claimer a"), b.expect("claimer b"));
    let mut all: Vec<String> = a.iter().chain(&b).cloned().collect();
    all.sort();
    let total = all.len();
    all.dedup();
    assert_eq!(
        total,
        all.len(),
        "no delivery claimed twice (a {a:?}, b {b:?})"
    );
    assert_eq!(all.len(), 60, "every delivery claimed");
}

fn small_embedded(dir: &std::path::Path) -> SharedStore {
    Arc::new(
        ecp::store::embedded::EmbeddedStore::open(dir)
            .expect("open")
            .with_caps(small_caps()),
    )
}

async fn small_redis(redis: &RedisServer) -> SharedStore {
    Arc::new(
        ecp::store::redis::RedisStore::connect(&redis.url())
            .await
            .expect("connect")
            .with_caps(small_caps()),
    )
}

#[tokio::test]
async fn embedded_alert_store_conformance() {
    let dir = tempfile::tempdir().expect("tmp");
    let store = small_embedded(dir.path());
    alert_conformance(store.clone(), store.clone()).await;
    concurrent_claims(store.clone(), store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn redis_alert_store_conformance() {
    let redis = RedisServer::start().await;
    let (store, other) = (small_redis(&redis).await, small_redis(&redis).await);
    alert_conformance(store.clone(), other.clone()).await;
    concurrent_claims(store, other).await;
}

// ------------------------------------------------------------ metrics

use ecp_actors::series::{self, Point, Tier, BUCKET_MS, RAW_RETENTION_MS};

const NOW: u64 = 1_700_000_100_000;

fn sample(at_ms: u64, connections: f64) -> ecp_protocol::MetricSample {
    ecp_protocol::MetricSample {
        at_ms,
        values: vec![
            ("connections".into(), connections),
            ("received_msg_rate".into(), 12.5),
        ],
    }
}

fn conns(points: &[Point]) -> Vec<(u64, Option<f64>)> {
    points
        .iter()
        .map(|p| (p.at, p.get("connections")))
        .collect()
}

async fn all_points(store: &SharedStore, cluster: &str, tier: Tier) -> Vec<Point> {
    store
        .metric_points(cluster, tier, 0, u64::MAX)
        .await
        .expect("points")
}

/// Series and alarms, on a store with [`small_caps`] (10 raw points, 3
/// roll-ups per cluster).
async fn metric_conformance(store: SharedStore) {
    let b0 = series::bucket_of(NOW - 3_600_000);
    // Spacing 10 s: the sample 1 s after another is refused.
    let batch = [
        sample(b0, 10.0),
        sample(b0 + 15_000, 20.0),
        sample(b0 + 16_000, 99.0),
        sample(b0 + 30_000, 30.0),
    ];
    let r = store
        .append_metrics("m1", &batch, 10_000, NOW)
        .await
        .expect("append");
    assert_eq!(
        r,
        MetricsAppended {
            kept: 3,
            refused: 1,
            rollups: 0
        }
    );
    // A resend (the ack was lost) stores nothing twice.
    let r = store
        .append_metrics("m1", &batch, 10_000, NOW)
        .await
        .expect("resend");
    assert_eq!((r.kept, r.refused), (0, 4));
    let raw = all_points(&store, "m1", Tier::Raw).await;
    assert_eq!(
        conns(&raw),
        [
            (b0, Some(10.0)),
            (b0 + 15_000, Some(20.0)),
            (b0 + 30_000, Some(30.0))
        ]
    );
    assert_eq!(
        raw[0].get("received_msg_rate"),
        Some(12.5),
        "every value kept"
    );
    assert_eq!(
        conns(
            &store
                .metric_points("m1", Tier::Raw, b0 + 15_000, b0 + 30_000)
                .await
                .expect("range")
        )
        .len(),
        2,
        "since and until are inclusive"
    );
    assert!(all_points(&store, "m1", Tier::Rollup).await.is_empty());
    // The next bucket begins: the first one is rolled up (the mean), once.
    let r = store
        .append_metrics("m1", &[sample(b0 + BUCKET_MS, 40.0)], 10_000, NOW)
        .await
        .expect("next bucket");
    assert_eq!(r.rollups, 1);
    let r = store
        .append_metrics("m1", &[sample(b0 + 2 * BUCKET_MS, 50.0)], 10_000, NOW)
        .await
        .expect("and the next");
    assert_eq!(r.rollups, 1);
    assert_eq!(
        conns(&all_points(&store, "m1", Tier::Rollup).await),
        [(b0, Some(20.0)), (b0 + BUCKET_MS, Some(40.0))]
    );

    // The newest raw point of each cluster, in the order asked.
    store
        .append_metrics("m2", &[sample(NOW - 5_000, 7.0)], 10_000, NOW)
        .await
        .expect("m2");
    let latest = store
        .latest_points(&["m1".into(), "none".into(), "m2".into()])
        .await
        .expect("latest");
    assert_eq!(
        latest
            .iter()
            .map(|p| p.as_ref().map(|p| p.at))
            .collect::<Vec<_>>(),
        [Some(b0 + 2 * BUCKET_MS), None, Some(NOW - 5_000)]
    );
    assert_eq!(
        latest[2].as_ref().and_then(|p| p.get("connections")),
        Some(7.0)
    );
    assert!(store.latest_points(&[]).await.expect("none").is_empty());

    // A day later: the raw points of a day ago are gone, the roll-ups stay
    // (and the open bucket is rolled up as the next begins).
    let later = NOW + RAW_RETENTION_MS;
    let r = store
        .append_metrics("m1", &[sample(later - 1_000, 60.0)], 10_000, later)
        .await
        .expect("a day later");
    assert_eq!((r.kept, r.rollups), (1, 1));
    assert_eq!(
        conns(&all_points(&store, "m1", Tier::Raw).await),
        [(later - 1_000, Some(60.0))]
    );
    assert_eq!(
        conns(&all_points(&store, "m1", Tier::Rollup).await),
        [
            (b0, Some(20.0)),
            (b0 + BUCKET_MS, Some(40.0)),
            (b0 + 2 * BUCKET_MS, Some(50.0))
        ]
    );
    // Roll-ups older than their retention go too.
    let much_later = b0 + BUCKET_MS + series::ROLLUP_RETENTION_MS;
    store
        .append_metrics("m1", &[sample(much_later, 1.0)], 10_000, much_later)
        .await
        .expect("a month later");
    assert_eq!(
        conns(&all_points(&store, "m1", Tier::Rollup).await)
            .first()
            .map(|p| p.0),
        Some(b0 + 2 * BUCKET_MS),
        "b0 and b0+5min are past 30 days"
    );

    // Caps: the newest 10 raw points and 3 roll-ups.
    let many: Vec<_> = (0..15u64)
        .map(|i| sample(NOW - 60_000 + i * 1_000, i as f64))
        .collect();
    let r = store
        .append_metrics("m3", &many, 1_000, NOW)
        .await
        .expect("many");
    assert_eq!(r.kept, 15);
    let raw = all_points(&store, "m3", Tier::Raw).await;
    assert_eq!(raw.len(), 10);
    assert_eq!(raw[0].get("connections"), Some(5.0), "the oldest went");
    let buckets: Vec<_> = (0..6u64)
        .map(|i| sample(b0 + i * BUCKET_MS, i as f64))
        .collect();
    let r = store
        .append_metrics("m4", &buckets, 1_000, NOW)
        .await
        .expect("buckets");
    assert_eq!(r.rollups, 5);
    assert_eq!(
        conns(&all_points(&store, "m4", Tier::Rollup).await),
        [
            (b0 + 2 * BUCKET_MS, Some(2.0)),
            (b0 + 3 * BUCKET_MS, Some(3.0)),
            (b0 + 4 * BUCKET_MS, Some(4.0))
        ]
    );

    // Bytes, alarms.
    assert!(store.metrics_bytes("m3").await.expect("bytes") > 0);
    assert_eq!(store.metrics_bytes("none").await.expect("bytes"), 0);
    assert_eq!(
        store.alarms("m3").await.expect("alarms"),
        AlarmSet::default()
    );
    let alarms = AlarmSet {
        active: vec![ecp_protocol::EmqxAlarm {
            node: "emqx@n1".into(),
            name: "high_cpu_usage".into(),
            message: "cpu 95%".into(),
            details: "{\"usage\":\"95%\"}".into(),
            activate_at_ms: 5,
            deactivate_at_ms: None,
        }],
        history: vec![],
    };
    store.put_alarms("m3", &alarms).await.expect("put alarms");
    assert_eq!(store.alarms("m3").await.expect("alarms"), alarms);

    // Deleting the cluster deletes its series and alarms, only its.
    store.remove_cluster("m3").await.expect("remove");
    assert!(all_points(&store, "m3", Tier::Raw).await.is_empty());
    assert_eq!(
        store.latest_points(&["m3".into()]).await.expect("latest"),
        [None]
    );
    assert_eq!(store.metrics_bytes("m3").await.expect("bytes"), 0);
    assert_eq!(
        store.alarms("m3").await.expect("alarms"),
        AlarmSet::default()
    );
    store.remove_cluster("m4").await.expect("remove");
    assert!(all_points(&store, "m4", Tier::Rollup).await.is_empty());
    assert_eq!(all_points(&store, "m2", Tier::Raw).await.len(), 1);
}

/// Caps for [`long_series`]: more points than a block of the embedded
/// store holds (about 4 KB: some 80 points of [`full_sample`]).
fn long_caps() -> Caps {
    Caps {
        raw_points: 300,
        rollup_points: 160,
        ..small_caps()
    }
}

/// A sample with every metric (most of them fractional, as rates and
/// means are): about 50 bytes packed.
fn full_sample(at_ms: u64, connections: f64) -> ecp_protocol::MetricSample {
    let values = ecp_protocol::metrics::METRICS
        .iter()
        .enumerate()
        .map(|(i, m)| {
            let v = if i == 0 { connections } else { i as f64 + 0.25 };
            (m.name.to_string(), v)
        })
        .collect();
    ecp_protocol::MetricSample { at_ms, values }
}

/// Series longer than a block (the embedded store keeps points in blocks
/// of about 4 KB): appends in batches fill one block and begin the next,
/// ranges start and end inside blocks, the caps and the retention cut the
/// oldest block in the middle, on a store with [`long_caps`].
async fn long_series(store: SharedStore) {
    let t0 = NOW - 2 * 3_600_000;
    // 400 samples 10 s apart, in batches of 60 (and one of 40).
    let all: Vec<_> = (0..400u64)
        .map(|i| full_sample(t0 + i * 10_000, (i * 7 % 1_000) as f64))
        .collect();
    let mut rollups = 0;
    for batch in all.chunks(60) {
        let r = store
            .append_metrics("long", batch, 10_000, NOW)
            .await
            .expect("append");
        assert_eq!((r.kept, r.refused), (batch.len(), 0));
        rollups += r.rollups;
    }
    let want: Vec<(u64, Option<f64>)> = all[100..]
        .iter()
        .map(|s| (s.at_ms, Some(s.values[0].1)))
        .collect();
    let raw = all_points(&store, "long", Tier::Raw).await;
    assert_eq!(conns(&raw), want, "the newest 300, in order");
    assert!(raw.iter().all(|p| p.get("live_connections") == Some(1.25)));
    // Any range: inclusive, oldest first, whichever blocks it crosses.
    for (a, b) in [
        (0, 0),
        (0, 299),
        (1, 298),
        (37, 38),
        (50, 200),
        (150, 151),
        (299, 299),
    ] {
        let (since, until) = (want[a].0, want[b].0);
        for (since, until) in [(since, until), (since - 1, until + 1), (since + 1, until)] {
            let got = store
                .metric_points("long", Tier::Raw, since, until)
                .await
                .expect("range");
            let expect: Vec<_> = want
                .iter()
                .filter(|p| p.0 >= since && p.0 <= until)
                .cloned()
                .collect();
            assert_eq!(conns(&got), expect, "{since}..={until}");
        }
    }
    assert!(store
        .metric_points("long", Tier::Raw, want[10].0 + 1, want[10].0 + 9_999)
        .await
        .expect("between two points")
        .is_empty());
    let latest = store.latest_points(&["long".into()]).await.expect("latest");
    assert_eq!(latest[0].as_ref().map(|p| p.at), want.last().map(|p| p.0));
    // 4,000 s: 13 buckets closed, the open one not.
    assert_eq!(rollups, 13);
    assert_eq!(all_points(&store, "long", Tier::Rollup).await.len(), 13);

    // A day after the 150th kept point: it and the older ones are gone,
    // the rest and the new one stay.
    let later = want[150].0 + RAW_RETENTION_MS;
    store
        .append_metrics("long", &[full_sample(later - 1_000, 1.0)], 10_000, later)
        .await
        .expect("a day later");
    let mut expect = want[151..].to_vec();
    expect.push((later - 1_000, Some(1.0)));
    assert_eq!(conns(&all_points(&store, "long", Tier::Raw).await), expect);
    let r = store
        .append_metrics("long", &[full_sample(later + 9_000, 2.0)], 10_000, later)
        .await
        .expect("and 10 s on");
    assert_eq!(r.kept, 1);
    assert_eq!(
        all_points(&store, "long", Tier::Raw).await.len(),
        expect.len() + 1
    );

    // Roll-ups over blocks: 200 samples 5 min apart close 199 buckets; the
    // newest 160 stay.
    let b0 = series::bucket_of(NOW - 17 * 3_600_000);
    let sparse: Vec<_> = (0..200u64)
        .map(|i| full_sample(b0 + i * BUCKET_MS + 1_000, i as f64))
        .collect();
    let mut rolled = 0;
    for batch in sparse.chunks(45) {
        rolled += store
            .append_metrics("sparse", batch, 10_000, NOW)
            .await
            .expect("sparse")
            .rollups;
    }
    assert_eq!(rolled, 199);
    let want: Vec<_> = (39..199u64)
        .map(|i| (b0 + i * BUCKET_MS, Some(i as f64)))
        .collect();
    assert_eq!(
        conns(&all_points(&store, "sparse", Tier::Rollup).await),
        want
    );
    let mid = store
        .metric_points("sparse", Tier::Rollup, want[40].0, want[150].0 - 1)
        .await
        .expect("roll-up range");
    assert_eq!(conns(&mid), want[40..150]);
    assert_eq!(all_points(&store, "sparse", Tier::Raw).await.len(), 200);

    store.remove_cluster("long").await.expect("remove");
    store.remove_cluster("sparse").await.expect("remove");
    assert!(all_points(&store, "long", Tier::Raw).await.is_empty());
    assert!(all_points(&store, "sparse", Tier::Rollup).await.is_empty());
    assert_eq!(store.metrics_bytes("sparse").await.expect("bytes"), 0);
}

/// Two writers race on one cluster's series: whatever interleaving, the
/// stored points are what they were told was kept, in order and spaced.
async fn racing_appends(store: SharedStore, other: SharedStore) {
    let writer = |s: SharedStore, first: u64| async move {
        let mut kept = 0;
        for i in 0..4u64 {
            let at = NOW - 60_000 + first + i * 2_000;
            kept += s
                .append_metrics("race", &[sample(at, at as f64)], 1_000, NOW)
                .await
                .expect("append")
                .kept;
        }
        kept
    };
    let (a, b) = tokio::join!(
        tokio::spawn(writer(store.clone(), 0)),
        tokio::spawn(writer(other, 1_000))
    );
    let kept = a.expect("writer a") + b.expect("writer b");
    let raw = all_points(&store, "race", Tier::Raw).await;
    assert_eq!(raw.len(), kept, "each kept point stored once");
    assert!(
        raw.windows(2).all(|w| w[1].at >= w[0].at + 1_000),
        "{:?}",
        conns(&raw)
    );
}

#[tokio::test]
async fn embedded_metric_store_conformance() {
    let dir = tempfile::tempdir().expect("tmp");
    let store = small_embedded(dir.path());
    metric_conformance(store.clone()).await;
    racing_appends(store.clone(), store).await;
    let dir = tempfile::tempdir().expect("tmp");
    long_series(Arc::new(
        ecp::store::embedded::EmbeddedStore::open(dir.path())
            .expect("open")
            .with_caps(long_caps()),
    ))
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn redis_metric_store_conformance() {
    let redis = RedisServer::start().await;
    let (store, other) = (small_redis(&redis).await, small_redis(&redis).await);
    metric_conformance(store.clone()).await;
    racing_appends(store, other).await;
    long_series(Arc::new(
        ecp::store::redis::RedisStore::connect(&redis.url())
            .await
            .expect("connect")
            .with_caps(long_caps()),
    ))
    .await;
}
