//! turingwatch-web: the HTTP side of the server (report site, JSON API, report ingest route).
//!
//! This crate owns the HTTP contract and the identity rules; it knows nothing of the store or
//! actors. The daemon implements a small backend trait over its store, so the rules here are
//! tested against a fake backend without I/O.

pub mod identity;
