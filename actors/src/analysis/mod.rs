//! Analysis: calendar periods, seff-style efficiencies, findings and right-sizing, as pure
//! functions over store data. (Issue #5.)
