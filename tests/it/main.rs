//! Integration tests: real `custody node` processes on loopback, real mutual
//! TLS, real RocksDB. One binary, files by area.

mod access;
mod alerts;
mod audit;
mod backup;
mod bench;
mod browser;
mod certs;
mod cluster;
mod console;
mod demo;
mod edge;
mod harness;
mod hosts;
mod input;
mod json;
mod keys;
mod object_store;
mod ops;
mod power;
mod purge;
mod registry;
mod scrub;
mod seal;
mod service;
mod session;
mod storage;
mod tiles;
mod tls;
mod tsa;
mod verify;
mod witness;
