//! The roles: one module per subcommand, on top of the actors and the domain.

/// `turingwatch distribute`: the allocator on its own.
pub mod distribute;
/// `turingwatch scrape`: the node's sampler and reporter.
pub mod scrape;
/// `turingwatch server`: the server's actors and HTTP.
pub mod server;
