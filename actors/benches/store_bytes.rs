//! Bytes per step sample on disk, and ingest speed, for a realistic load.
//!
//! 500 series (job, step, node) sampled every 20 s for ~11 hours = 1 000 000 samples, written
//! the way ingest writes them: one report per node per minute (3 samples per series). Prints the
//! database file size divided by the sample count. Run: `cargo bench --bench store_bytes`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Instant;
use turingwatch::job::{JobId, StepId};
use turingwatch::sample::StepSample;
use turingwatch::store::Store;

fn main() {
    for (name, noisy) in [
        ("steady job (RSS and I/O change in some intervals)", false),
        ("noisy job (every counter random each interval)", true),
    ] {
        println!("== {name}");
        scenario(noisy);
    }
}

fn scenario(noisy: bool) {
    let dir = std::env::temp_dir().join(format!("tw-store-bytes-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("dir");
    let path = dir.join("bytes.redb");
    let store = Store::open(&path).expect("open");
    let series_per_node = 50u64;
    let nodes = 10u64;
    let samples_per_series = 2_000u64;
    let start = 1_790_000_000u64;
    let mut rng = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    let t0 = Instant::now();
    let mut total = 0u64;
    let mut state = vec![StepSample::default(); (series_per_node * nodes) as usize];
    for round in 0..samples_per_series / 3 {
        for node in 0..nodes {
            let mut batch = Vec::with_capacity((series_per_node * 3) as usize);
            for s in 0..series_per_node {
                let idx = (node * series_per_node + s) as usize;
                for k in 0..3 {
                    let i = round * 3 + k;
                    let st = &mut state[idx];
                    // A busy 4-core step: ~4 cores of user time, a little system time, RSS wandering.
                    st.at = start + 20 * i;
                    st.cpu_user_cs += 7_600 + next() % 800;
                    st.cpu_sys_cs += next() % 40;
                    if noisy {
                        st.rss_kib = 2_000_000 + next() % 65_536;
                        st.minor_faults += next() % 2_000;
                        st.read_kib += next() % 4_096;
                        st.write_kib += next() % 1_024;
                    } else {
                        // Memory moves by whole pages in a third of the intervals; I/O in a tenth.
                        if next() % 3 == 0 {
                            st.rss_kib = (2_000_000 + (next() % 1_024) * 4).max(st.rss_kib / 2);
                            st.minor_faults += next() % 256;
                        }
                        if next() % 10 == 0 {
                            st.read_kib += next() % 4_096;
                            st.write_kib += next() % 1_024;
                        }
                    }
                    st.mem_current_kib = st.rss_kib + 10_000;
                    st.mem_peak_kib = st.mem_peak_kib.max(st.mem_current_kib);
                    st.major_faults += u64::from(next() % 50 == 0);
                    st.threads = 4;
                    st.processes = 1;
                    st.cpus = 4;
                    batch.push((JobId(10_000 + idx as u64), StepId(0), st.clone()));
                }
            }
            total += batch.len() as u64;
            store.append_samples(&format!("n{node}"), &batch).expect("append");
        }
    }
    let elapsed = t0.elapsed();
    {
        let stats = store.sample_block_stats().expect("stats");
        println!(
            "sample blocks:       {} blocks, {:.2} bytes of encoded value per sample; leaf pages {}, stored {} B, metadata {} B, fragmented {} B",
            stats.blocks,
            stats.value_bytes as f64 / total as f64,
            stats.leaf_pages,
            stats.stored_bytes,
            stats.metadata_bytes,
            stats.fragmented_bytes
        );
    }
    drop(store);
    let meta = std::fs::metadata(&path).expect("size");
    let bytes = meta.len();
    // redb grows its file in steps (set_len); disk blocks are what the file really occupies.
    let used = std::os::unix::fs::MetadataExt::blocks(&meta) * 512;
    println!("samples stored:      {total}");
    println!(
        "database file:       {bytes} bytes long ({:.2} bytes per sample, as written)",
        bytes as f64 / total as f64
    );
    println!("disk blocks used:    {used} bytes ({:.2} bytes per sample)", used as f64 / total as f64);
    let mut store = Store::open(&path).expect("reopen");
    let compacted_any = store.compact().expect("compact");
    println!("compaction ran:      {compacted_any}");
    drop(store);
    let meta = std::fs::metadata(&path).expect("size");
    let (compacted, used) = (meta.len(), std::os::unix::fs::MetadataExt::blocks(&meta) * 512);
    println!(
        "after compaction:    {compacted} bytes long ({:.2} per sample), {used} bytes of disk blocks ({:.2} per sample)",
        compacted as f64 / total as f64,
        used as f64 / total as f64
    );
    println!(
        "ingest:              {:.0} samples/s ({} reports)",
        total as f64 / elapsed.as_secs_f64(),
        samples_per_series / 3 * nodes
    );
    let _ = std::fs::remove_dir_all(&dir);
}
