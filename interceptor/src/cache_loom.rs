//! loom model checks of the cache's slot protocol (`RUSTFLAGS="--cfg loom" cargo test --release loom`).
//!
//! Why: the ownership argument of the cache is "whoever wins the CAS on a slot word owns
//! that mapping". These models explore the interleavings of two threads and check that a
//! mapping is never handed to two owners and never lost: at the end every mapping is
//! exactly once either taken, refused, released by eviction, or still cached, and the
//! byte/entry counters agree.

use super::*;
use loom::sync::Arc;
use loom::thread;

const MIB: usize = 1 << 20;
const A: usize = 0x1000_0000;
const B: usize = 0x2000_0000;

fn model(f: impl Fn() + Sync + Send + 'static) {
    let mut b = loom::model::Builder::new();
    b.preemption_bound = Some(2);
    b.max_branches = 1_000_000;
    let f = std::sync::Arc::new(f);
    b.check(move || {
        // The class table is large when built from loom atomics: give the model a big stack.
        let f = f.clone();
        thread::Builder::new().stack_size(64 << 20).spawn(move || f()).unwrap().join().unwrap();
    });
}

/// Drains the cache and returns every base still cached; counters must end at zero.
fn drain(c: &Cache) -> Vec<usize> {
    let mut left = Vec::new();
    c.drain(&mut |b, _| left.push(b));
    assert_eq!(c.cached_bytes(), 0);
    assert_eq!(c.cached_entries(), 0);
    left
}

fn sorted(mut v: Vec<usize>) -> Vec<usize> {
    v.sort_unstable();
    v
}

#[test]
fn loom_two_takers_one_entry() {
    model(|| {
        let c = Arc::new(Cache::new(1 << 30, 16, 2));
        assert!(c.put(A, MIB, &mut |_, _| unreachable!()));
        let c1 = c.clone();
        let t = thread::spawn(move || c1.take(MIB, 2 * MIB, false));
        let mine = c.take(MIB, 2 * MIB, false);
        let theirs = t.join().unwrap();
        assert!(mine.is_some() != theirs.is_some(), "exactly one owner");
        assert_eq!(mine.or(theirs), Some((A, MIB)));
        assert!(drain(&c).is_empty());
    });
}

#[test]
fn loom_put_races_take() {
    model(|| {
        let c = Arc::new(Cache::new(1 << 30, 16, 2));
        let c1 = c.clone();
        let t = thread::spawn(move || c1.put(A, MIB, &mut |_, _| unreachable!()));
        let got = c.take(MIB, MIB, false);
        assert!(t.join().unwrap());
        let left = drain(&c);
        match got {
            Some(x) => assert!(x == (A, MIB) && left.is_empty()),
            None => assert_eq!(left, vec![A]),
        }
    });
}

#[test]
fn loom_puts_into_full_class_lose_nothing() {
    model(|| {
        // One slot per class: the second put must evict (release) the first entry.
        let c = Arc::new(Cache::new(1 << 30, 16, 1));
        let c1 = c.clone();
        let t = thread::spawn(move || {
            let mut rel = Vec::new();
            let ok = c1.put(A, MIB, &mut |b, _| rel.push(b));
            (ok, rel)
        });
        let mut rel = Vec::new();
        let ok = c.put(B, MIB, &mut |b, _| rel.push(b));
        let (ok1, rel1) = t.join().unwrap();
        let mut all = rel;
        all.extend(rel1);
        if !ok {
            all.push(B);
        }
        if !ok1 {
            all.push(A);
        }
        all.extend(drain(&c));
        assert_eq!(sorted(all), vec![A, B], "each mapping exactly once");
    });
}

#[test]
fn loom_budget_race_stays_bounded() {
    model(|| {
        // Room for one 1 MiB entry only.
        let c = Arc::new(Cache::new(MIB + MIB / 2, 16, 4));
        let c1 = c.clone();
        let t = thread::spawn(move || {
            let mut rel = Vec::new();
            let ok = c1.put(A, MIB, &mut |b, _| rel.push(b));
            (ok, rel, c1.cached_bytes())
        });
        let mut rel = Vec::new();
        let ok = c.put(B, MIB, &mut |b, _| rel.push(b));
        assert!(c.cached_bytes() <= MIB + MIB / 2);
        let (ok1, rel1, seen) = t.join().unwrap();
        assert!(seen <= MIB + MIB / 2);
        let mut all = rel;
        all.extend(rel1);
        if !ok {
            all.push(B);
        }
        if !ok1 {
            all.push(A);
        }
        let left = drain(&c);
        assert!(left.len() <= 1);
        all.extend(left);
        assert_eq!(sorted(all), vec![A, B], "each mapping exactly once");
    });
}

#[test]
fn loom_stash_owner_races_a_stealer() {
    model(|| {
        let c = Arc::new(Cache::new(1 << 30, 16, 2));
        let c1 = c.clone();
        // The stealer runs the slow path while the owner stashes and takes back.
        let t = thread::spawn(move || c1.take_stashed(MIB, 2 * MIB, false));
        assert!(c.stash_put(0, A, MIB, &mut |_, _| unreachable!()));
        let mine = c.stash_take(0, MIB, 2 * MIB, false);
        let theirs = t.join().unwrap();
        let left = drain(&c);
        let owners = usize::from(mine.is_some()) + usize::from(theirs.is_some()) + left.len();
        assert_eq!(owners, 1, "exactly one owner");
    });
}

#[test]
fn loom_merge_from_a_stash_races_a_stealer() {
    model(|| {
        let c = Arc::new(Cache::new(1 << 30, 16, 2));
        assert!(c.stash_put(0, A, MIB, &mut |_, _| unreachable!()));
        let c1 = c.clone();
        let t = thread::spawn(move || c1.take_stashed(MIB, MIB, false));
        let merged = c.take_adjacent(0, A + MIB, MIB);
        let stolen = t.join().unwrap();
        assert!(merged.is_some() != stolen.is_some(), "exactly one owner");
        assert_eq!(merged.or(stolen), Some((A, MIB)));
        assert!(drain(&c).is_empty());
    });
}

#[test]
fn loom_credit_reclaim_races_the_owner() {
    // The owner stashes A, takes it back (its reservation becomes credit) and stashes it
    // again (paid from the credit) while another thread's put needs the whole budget
    // and reclaims the credit. The budget holds throughout, the counters end at zero,
    // and each mapping ends exactly once with the caller, released, or cached.
    model(|| {
        // A stash keeps up to 1/128 of the budget as credit: 1 MiB here.
        const BUDGET: usize = 128 * MIB;
        let c = Arc::new(Cache::new(BUDGET, 16, 2));
        let c1 = c.clone();
        let t = thread::spawn(move || {
            let mut rel = Vec::new();
            let ok = c1.put(B, BUDGET, &mut |b, _| rel.push(b));
            (ok, rel, c1.cached_bytes())
        });
        let mut rel = Vec::new();
        let first = c.stash_put(0, A, MIB, &mut |b, _| rel.push(b));
        let back = if first { c.stash_take(0, MIB, MIB, false) } else { None };
        let second = back.is_some() && c.stash_put(0, A, MIB, &mut |b, _| rel.push(b));
        let (ok_b, rel_b, seen) = t.join().unwrap();
        assert!(seen <= BUDGET && c.cached_bytes() <= BUDGET, "over budget");
        assert!(!first || back.is_some(), "nothing evicts from a stash");
        let mut all = drain(&c);
        all.extend(rel);
        all.extend(rel_b);
        if !first || !second {
            all.push(A);
        }
        if !ok_b {
            all.push(B);
        }
        assert_eq!(sorted(all), vec![A, B], "each mapping exactly once");
    });
}
