//! `custody`: a distributed, secure evidence vault. See ARCHITECTURE.md for
//! the map of modules and what each must not know.
#![forbid(unsafe_code)]

pub mod api;
pub mod approval;
pub mod audit;
pub mod auth;
pub mod cli;
pub mod client;
pub mod config;
pub mod crypto;
pub mod evidence;
pub mod limits;
pub mod metrics;
pub mod mutation;
pub mod node;
pub mod pki;
pub mod raft;
pub mod sealing;
pub mod storage;
pub mod tls;
pub mod vault;
pub mod wire;
pub mod witness;
