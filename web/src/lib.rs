//! turingwatch-web: the report site and its JSON API (the scrapers' ingest route is the daemon's,
//! `turingwatch::actors::ingest`).
//!
//! This crate owns the HTTP contract ([`api`]) and the identity rules ([`identity`]); it knows
//! nothing of the store or actors. The daemon implements [`backend::Backend`] over its store,
//! so the rules here are tested against a fake backend without I/O. [`routes::mount`] adds the
//! site and API to the daemon's actix-web App; the UI is embedded (no CDN, works offline).

pub mod api;
pub mod backend;
pub mod csrf;
pub mod csv;
pub mod identity;
pub mod listing;
pub mod routes;
