//! Analysis: calendar periods, seff-style efficiencies, energy, sample statistics, findings,
//! right-sizing and whether the mails change anything (outcomes), as pure functions over store data (`load.rs` is the only part that reads the
//! store). The refresh/close cycle of a period that uses them is `crate::period`.

pub mod coverage;
pub mod efficiency;
pub mod energy;
pub mod findings;
pub mod load;
pub mod outcome;
pub mod period;
pub mod rightsize;
pub mod series;
pub mod summary;
