//! Analysis: calendar periods, seff-style efficiencies, sample statistics, findings and
//! right-sizing, as pure functions over store data (`load.rs` is the only part that reads the
//! store), and the refresh/close cycle of a period (`run.rs`).

pub mod efficiency;
pub mod findings;
pub mod load;
pub mod period;
pub mod rightsize;
pub mod run;
pub mod series;
pub mod summary;
