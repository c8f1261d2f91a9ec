//! The fuzz targets of `fuzz/` as bounded property tests: each target's seeds,
//! mutated with a fixed random seed, a few thousand inputs each. A panic, a stack
//! overflow or an input that runs unbounded fails the test, so the targets cannot
//! rot between fuzzing sessions (issue 15, "Also").

use mobius_workflow::fuzz::Rng;
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// Tokens that tend to reach deep or rare paths of the parsers.
const TOKENS: &[&[u8]] = &[
    b"(",
    b")",
    b"[",
    b"]",
    b"{",
    b"}",
    b"&a ",
    b"*a",
    b"<<: ",
    b"\n  ",
    b"\"",
    b"\\",
    b"+",
    b"abs(",
    b" and ",
    b" or ",
    b"|",
    b"${{",
    b"}}",
    b"\r\n",
    b"# EOF\n",
    b"1e308",
    b"-9223372036854775808",
    b"[5m:1s]",
    b"offset -1y",
    b"@ end()",
    b"\x00",
    b"\xff",
];

fn mutate(rng: &mut Rng, input: &mut Vec<u8>, seeds: &[Vec<u8>]) {
    for _ in 0..=rng.below(4) {
        let at = rng.below(input.len() + 1);
        match rng.below(6) {
            0 if !input.is_empty() => {
                let i = rng.below(input.len());
                input[i] ^= 1 << rng.below(8);
            }
            1 => input.insert(at, rng.next() as u8),
            2 if !input.is_empty() => {
                let end = (at + rng.below(16)).min(input.len());
                input.drain(at.min(end)..end);
            }
            3 => {
                let token = rng.pick(TOKENS);
                let times = if rng.below(8) == 0 { 1 + rng.below(2000) } else { 1 };
                for _ in 0..times {
                    input.splice(at..at, token.iter().copied());
                }
            }
            4 if !input.is_empty() => {
                let start = rng.below(input.len());
                let end = (start + 1 + rng.below(64)).min(input.len());
                let piece = input[start..end].to_vec();
                input.splice(at..at, piece);
            }
            _ => {
                let other = &seeds[rng.below(seeds.len())];
                if !other.is_empty() {
                    let start = rng.below(other.len());
                    let end = (start + 1 + rng.below(64)).min(other.len());
                    input.splice(at..at, other[start..end].iter().copied());
                }
            }
        }
    }
    input.truncate(64 * 1024);
}

fn seeds(target: &str) -> Vec<Vec<u8>> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/seeds").join(target);
    let mut out: Vec<Vec<u8>> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| {
            let path = e.expect("a seed directory entry").path();
            std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        })
        .collect();
    out.sort();
    assert!(!out.is_empty(), "no seeds in {}", dir.display());
    out
}

/// Runs `target` on its seeds and `rounds` mutations of them; no input may take
/// longer than `slowest`.
fn check(target: &str, rounds: usize, run: fn(&[u8])) {
    let seeds = seeds(target);
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15 ^ target.len() as u64);
    let slowest = Duration::from_secs(5);
    for seed in &seeds {
        run(seed);
    }
    for round in 0..rounds {
        let mut input = seeds[rng.below(seeds.len())].clone();
        mutate(&mut rng, &mut input, &seeds);
        let started = Instant::now();
        run(&input);
        let took = started.elapsed();
        assert!(
            took < slowest,
            "{target}: round {round} took {took:?} on {:?}",
            String::from_utf8_lossy(&input[..input.len().min(300)])
        );
    }
}

#[test]
fn fuzz_yaml() {
    check("yaml", 15000, mobius_workflow::fuzz::yaml);
}

#[test]
fn fuzz_expression() {
    check("expression", 15000, mobius_workflow::fuzz::expression);
}

#[test]
fn fuzz_promql() {
    check("promql", 10000, mobius_monitor::fuzz::promql);
}

#[test]
fn fuzz_logql() {
    check("logql", 10000, mobius_monitor::fuzz::logql);
}

#[test]
fn fuzz_exposition() {
    check("exposition", 15000, mobius_monitor::fuzz::exposition);
}

#[test]
fn fuzz_remote_write() {
    check("remote_write", 15000, mobius_monitor::fuzz::remote_write);
}

#[test]
fn fuzz_loki_push() {
    check("loki_push", 15000, mobius_monitor::fuzz::loki_push);
}

#[test]
fn fuzz_request_head() {
    check("request_head", 15000, mobius_router::fuzz::request_head);
}
