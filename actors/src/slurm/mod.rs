//! The SLURM adapter: runs SLURM's own commands with explicit formats and timeouts, and parses
//! their output into typed records. Parsing is pure (`parse_*`), running is async (`run_*`).
//! (Issue #3.)
