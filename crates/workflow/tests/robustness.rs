//! Malformed input never panics the parser: pseudo-random workflow-like text, deterministic seed.

use mobius_workflow::fuzz::Rng;
use mobius_workflow::{expr, parse_workflow, SourceFile};

const PIECES: &[&str] = &[
    "on",
    "push",
    "jobs",
    "a",
    "b",
    "runs-on",
    "steps",
    "run",
    "uses",
    "needs",
    "if",
    "env",
    "matrix",
    "strategy",
    ":",
    ": ",
    "\n",
    "\n  ",
    "\n    ",
    "- ",
    "[",
    "]",
    "{",
    "}",
    ",",
    "'",
    "\"",
    "${{",
    "}}",
    " ",
    "github.ref",
    "==",
    "&&",
    "||",
    "!",
    "(",
    ")",
    "contains(",
    "fromJSON(",
    "*",
    ".",
    "é",
    "ü",
    "\t",
    "#",
    "&x",
    "*x",
    "|",
    ">",
    "0x1F",
    "1e9",
    "-3",
    "null",
    "true",
    "include",
    "exclude",
    "${{ insert }}",
    "steps.x.outputs.y",
    "matrix.os",
];

#[test]
fn random_workflows_produce_results_or_errors_but_never_panic() {
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    for _ in 0..3000 {
        let len = 1 + (rng.next() % 60) as usize;
        let text: String = (0..len).map(|_| rng.pick(PIECES)).collect();
        let _ = parse_workflow(SourceFile::new("fuzz.yml", text.clone()));
        if let Ok(segments) = expr::split_template(&text) {
            for segment in segments {
                if let expr::Segment::Expr { expr, .. } = segment {
                    if let Ok(parsed) = expr::parse(&expr) {
                        let _ = expr::evaluate(&parsed, &expr::Contexts::default());
                    }
                }
            }
        }
        let _ = expr::parse(&text);
    }
}

#[test]
fn errors_render_for_every_random_failure() {
    let mut rng = Rng(42);
    for _ in 0..500 {
        let len = 1 + (rng.next() % 40) as usize;
        let text: String = (0..len).map(|_| rng.pick(PIECES)).collect();
        if let Err(errors) = parse_workflow(SourceFile::new("fuzz.yml", text)) {
            assert!(!errors.diagnostics.is_empty());
            assert!(!errors.render(false).is_empty());
        }
    }
}
