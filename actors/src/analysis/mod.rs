//! Analysis: calendar periods, seff-style efficiencies, findings and right-sizing, as pure
//! functions over store data. (Issue #5 adds periods, findings and right-sizing.)

pub mod efficiency;
