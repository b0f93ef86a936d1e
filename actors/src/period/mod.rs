//! The period cycle: create a period when the clock enters it, refresh its results after each
//! accounting import, close it when the import has passed its end (`cycle`), and write its result
//! bundle (`bundle`). It joins the pure analysis (`analysis`), the store, mail rendering and the
//! outbox; the rollover actor runs it off the executor.

pub mod bundle;
pub mod cycle;
