//! Raft RPCs between nodes: JSON over HTTPS with mutual TLS. A node's
//! certificate names it; the receiving side checks that the sender is a
//! member and is the node the RPC claims to come from (see `api::internal`).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use hyper::Method;
use openraft::error::{InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError, Unreachable};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse, VoteRequest, VoteResponse};
use openraft::BasicNode;
use serde::de::DeserializeOwned;
use serde::Serialize;

use super::{NodeId, TypeConfig};
use crate::client::{Http, HttpError};

/// Paths of the internal Raft endpoints.
pub const APPEND_PATH: &str = "/internal/raft/append";
pub const VOTE_PATH: &str = "/internal/raft/vote";
pub const SNAPSHOT_PATH: &str = "/internal/raft/snapshot";

#[derive(Clone)]
pub struct Network {
    http: Http,
    routes: Arc<BTreeMap<NodeId, String>>,
}

impl Network {
    /// `routes` overrides a member's advertised address for this node's own
    /// traffic to it (see `config::RawNodeConfig::routes`).
    pub fn new(http: Http, routes: Arc<BTreeMap<NodeId, String>>) -> Self {
        Network { http, routes }
    }
}

pub struct Peer {
    http: Http,
    target: NodeId,
    addr: String,
}

impl RaftNetworkFactory<TypeConfig> for Network {
    type Network = Peer;
    async fn new_client(&mut self, target: NodeId, node: &BasicNode) -> Peer {
        let addr = self.http.node_url(target, self.routes.get(&target).unwrap_or(&node.addr));
        Peer { http: self.http.clone(), target, addr }
    }
}

impl Peer {
    async fn rpc<Req: Serialize, Resp: DeserializeOwned, E: std::error::Error + DeserializeOwned>(
        &self,
        path: &str,
        req: &Req,
        option: &RPCOption,
    ) -> Result<Resp, RPCError<NodeId, BasicNode, RaftError<NodeId, E>>> {
        let url = format!("{}{}", self.addr, path);
        let ttl = option.hard_ttl().max(Duration::from_millis(200));
        let res: Result<Result<Resp, RaftError<NodeId, E>>, HttpError> = self.http.call(Method::POST, &url, Some(req), ttl).await;
        match res {
            Ok(Ok(r)) => Ok(r),
            Ok(Err(e)) => Err(RPCError::RemoteError(RemoteError::new(self.target, e))),
            Err(e @ HttpError::Unreachable { .. }) | Err(e @ HttpError::Timeout { .. }) => Err(RPCError::Unreachable(Unreachable::new(&e))),
            Err(e) => Err(RPCError::Network(NetworkError::new(&e))),
        }
    }
}

impl RaftNetwork<TypeConfig> for Peer {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<NodeId>, RPCError<NodeId, BasicNode, RaftError<NodeId>>> {
        self.rpc(APPEND_PATH, &rpc, &option).await
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<InstallSnapshotResponse<NodeId>, RPCError<NodeId, BasicNode, RaftError<NodeId, InstallSnapshotError>>> {
        self.rpc(SNAPSHOT_PATH, &rpc, &option).await
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<NodeId>,
        option: RPCOption,
    ) -> Result<VoteResponse<NodeId>, RPCError<NodeId, BasicNode, RaftError<NodeId>>> {
        self.rpc(VOTE_PATH, &rpc, &option).await
    }
}
