//! Integration tests: the real `ecp` binary over real sockets, with the
//! protocol test client standing in for agents.

mod alerting;
mod audit;
mod authority;
mod bad_input;
mod browser;
mod close_codes;
mod cluster_mode;
mod dashboard;
mod e2e;
mod harness;
mod hostile;
mod lifecycle;
mod logs;
mod matrix;
mod nginx;
mod operations;
mod ops;
mod plain_http;
mod procs;
mod redis_server;
mod sessions;
mod stop;
mod store;
mod tenancy;
mod webdriver;
