//! Canary analysis from the router's own samples: error ratio (absolute and against the
//! stable version), p99 latency against the stable version, and a Mann-Whitney rank test
//! of latencies at the end of each step.
//!
//! Ratios are judged by confidence bounds rather than point estimates, so a single
//! unlucky error among twenty requests does not roll a healthy canary back, while a
//! canary failing one request in five is caught after about twenty.

use crate::config::Analysis;
use serde::Serialize;

/// The requests one version served in the current step.
#[derive(Debug, Clone, Default)]
pub struct Window {
    pub requests: u64,
    pub failed: u64,
    /// Latencies to the response headers, in microseconds.
    pub latencies: Vec<u64>,
}

impl Window {
    pub fn add(&mut self, micros: u64, failed: bool) {
        self.requests += 1;
        self.failed += u64::from(failed);
        // Enough for the percentiles and the rank test; the counts stay exact.
        if self.latencies.len() < 20_000 {
            self.latencies.push(micros);
        }
    }

    pub fn error_ratio(&self) -> f64 {
        if self.requests == 0 {
            0.0
        } else {
            self.failed as f64 / self.requests as f64
        }
    }

    /// The 99th percentile latency in microseconds (nearest rank).
    pub fn p99(&self) -> Option<u64> {
        percentile(&self.latencies, 0.99)
    }

    pub fn median(&self) -> Option<u64> {
        percentile(&self.latencies, 0.5)
    }
}

fn percentile(values: &[u64], q: f64) -> Option<u64> {
    if values.is_empty() {
        return None;
    }
    let mut sorted = values.to_vec();
    sorted.sort_unstable();
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    Some(sorted[rank - 1])
}

/// What one look at the numbers concluded.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "verdict", content = "reason", rename_all = "snake_case")]
pub enum Verdict {
    Pass,
    /// Not enough data yet; the rollout holds and says why.
    Hold(String),
    Fail(String),
}

/// z for a one-sided 95% bound.
const Z: f64 = 1.645;
/// Fewer canary latencies than this leave the p99 unjudged (it would be the maximum).
const P99_MIN_SAMPLES: usize = 100;

/// Wilson score interval of `failed / n`.
fn wilson(failed: u64, n: u64) -> (f64, f64) {
    if n == 0 {
        return (0.0, 1.0);
    }
    let n = n as f64;
    let p = failed as f64 / n;
    let z2 = Z * Z;
    let centre = (p + z2 / (2.0 * n)) / (1.0 + z2 / n);
    let margin = Z * (p * (1.0 - p) / n + z2 / (4.0 * n * n)).sqrt() / (1.0 + z2 / n);
    ((centre - margin).max(0.0), (centre + margin).min(1.0))
}

/// Judges the canary against the stable version with the numbers so far in this step.
pub fn evaluate(settings: &Analysis, canary: &Window, stable: &Window) -> Verdict {
    if canary.requests < settings.min_requests {
        return Verdict::Hold(format!(
            "no verdict yet: the new version served {} of the {} requests needed",
            canary.requests, settings.min_requests
        ));
    }
    let (canary_low, _) = wilson(canary.failed, canary.requests);
    if canary_low > settings.max_error_ratio {
        return Verdict::Fail(format!(
            "error ratio {:.1}% ({} of {} requests) is above the {:.1}% limit",
            canary.error_ratio() * 100.0,
            canary.failed,
            canary.requests,
            settings.max_error_ratio * 100.0
        ));
    }
    if settings.max_error_ratio_vs_stable > 0.0 && stable.requests >= settings.min_requests {
        let (_, stable_high) = wilson(stable.failed, stable.requests);
        let limit = (settings.max_error_ratio_vs_stable * stable_high).max(0.01);
        if canary_low > limit {
            return Verdict::Fail(format!(
                "error ratio {:.1}% is more than {}× the stable version's {:.1}%",
                canary.error_ratio() * 100.0,
                settings.max_error_ratio_vs_stable,
                stable.error_ratio() * 100.0
            ));
        }
    }
    if settings.max_p99_vs_stable > 0.0
        && canary.latencies.len() >= P99_MIN_SAMPLES
        && stable.latencies.len() >= P99_MIN_SAMPLES
    {
        if let (Some(c), Some(s)) = (canary.p99(), stable.p99()) {
            let slack = u64::try_from(settings.p99_slack.as_micros()).unwrap_or(u64::MAX);
            if c as f64 > settings.max_p99_vs_stable * s as f64 && c > s.saturating_add(slack) {
                return Verdict::Fail(format!(
                    "p99 latency {:.1} ms is more than {}× the stable version's {:.1} ms",
                    c as f64 / 1000.0,
                    settings.max_p99_vs_stable,
                    s as f64 / 1000.0
                ));
            }
        }
    }
    Verdict::Pass
}

/// The end-of-step rank test: fails when the canary's latencies are significantly
/// higher than the stable ones (one-sided Mann-Whitney U, normal approximation with
/// tie correction) and its median is worse by more than 10% and 1 ms, so a difference
/// too small to matter never rolls back.
pub fn compare_latencies(settings: &Analysis, canary: &Window, stable: &Window) -> Verdict {
    if settings.mann_whitney_alpha <= 0.0 || canary.latencies.len() < 20 || stable.latencies.len() < 20 {
        return Verdict::Pass;
    }
    let p = mann_whitney_greater(&canary.latencies, &stable.latencies);
    let (Some(cm), Some(sm)) = (canary.median(), stable.median()) else {
        return Verdict::Pass;
    };
    if p < settings.mann_whitney_alpha && cm as f64 > sm as f64 * 1.1 && cm > sm + 1000 {
        return Verdict::Fail(format!(
            "latencies are higher than the stable version's (Mann-Whitney p = {p:.2e}; median {:.1} ms against {:.1} ms)",
            cm as f64 / 1000.0,
            sm as f64 / 1000.0
        ));
    }
    Verdict::Pass
}

/// P(values of `a` are stochastically greater than those of `b`) under the null hypothesis,
/// i.e. the one-sided p-value of the Mann-Whitney U test.
pub fn mann_whitney_greater(a: &[u64], b: &[u64]) -> f64 {
    let (n1, n2) = (a.len() as f64, b.len() as f64);
    let mut all: Vec<(u64, bool)> = a.iter().map(|v| (*v, true)).chain(b.iter().map(|v| (*v, false))).collect();
    all.sort_unstable_by_key(|(v, _)| *v);
    let n = all.len();
    let (mut rank_sum_a, mut tie_term) = (0.0, 0.0);
    let mut i = 0;
    while i < n {
        let mut j = i;
        while j + 1 < n && all[j + 1].0 == all[i].0 {
            j += 1;
        }
        let average_rank = (i + j) as f64 / 2.0 + 1.0;
        let tied = (j - i + 1) as f64;
        tie_term += tied * tied * tied - tied;
        rank_sum_a += average_rank * all[i..=j].iter().filter(|(_, from_a)| *from_a).count() as f64;
        i = j + 1;
    }
    let u = rank_sum_a - n1 * (n1 + 1.0) / 2.0;
    let nf = n as f64;
    let variance = n1 * n2 / 12.0 * ((nf + 1.0) - tie_term / (nf * (nf - 1.0)));
    if variance <= 0.0 {
        return 1.0;
    }
    let z = (u - n1 * n2 / 2.0 - 0.5) / variance.sqrt();
    0.5 * erfc(z / std::f64::consts::SQRT_2)
}

/// The complementary error function (Numerical Recipes' Chebyshev fit, relative error < 1.2e-7).
fn erfc(x: f64) -> f64 {
    let z = x.abs();
    let t = 1.0 / (1.0 + 0.5 * z);
    let poly = -z * z - 1.265_512_23
        + t * (1.000_023_68
            + t * (0.374_091_96
                + t * (0.096_784_18
                    + t * (-0.186_288_06
                        + t * (0.278_868_07
                            + t * (-1.135_203_98 + t * (1.488_515_87 + t * (-0.822_152_23 + t * 0.170_872_77))))))));
    let r = t * poly.exp();
    if x >= 0.0 {
        r
    } else {
        2.0 - r
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn window(requests: u64, failed: u64, latency: impl Fn(u64) -> u64) -> Window {
        let mut w = Window::default();
        for i in 0..requests {
            w.add(latency(i), i < failed);
        }
        w
    }

    #[test]
    fn too_few_requests_hold_and_say_so() {
        let verdict = evaluate(&Analysis::default(), &window(5, 0, |_| 1000), &window(500, 0, |_| 1000));
        assert_eq!(verdict, Verdict::Hold("no verdict yet: the new version served 5 of the 20 requests needed".into()));
    }

    #[test]
    fn one_in_five_failing_is_caught_at_twenty_requests_one_in_twenty_is_not() {
        let settings = Analysis::default();
        let stable = window(200, 0, |_| 1000);
        assert!(
            matches!(evaluate(&settings, &window(20, 4, |_| 1000), &stable), Verdict::Fail(m) if m.contains("above the 5.0% limit"))
        );
        assert_eq!(evaluate(&settings, &window(20, 1, |_| 1000), &stable), Verdict::Pass);
    }

    #[test]
    fn relative_error_and_latency_limits() {
        let settings = Analysis::default();
        // 4% errors against 0.5%: under the absolute limit, far above the stable version.
        let canary = window(1000, 40, |_| 1000);
        let stable = window(4000, 20, |_| 1000);
        assert!(
            matches!(evaluate(&settings, &canary, &stable), Verdict::Fail(m) if m.contains("stable version's 0.5%"))
        );
        // p99 of 80 ms against 10 ms.
        let slow = window(200, 0, |i| if i % 50 == 0 { 80_000 } else { 9_000 });
        let fast = window(1000, 0, |i| if i % 100 == 0 { 10_000 } else { 9_000 });
        assert!(matches!(evaluate(&settings, &slow, &fast), Verdict::Fail(m) if m.contains("p99")));
        // Sub-millisecond noise never fails on latency.
        let a = window(200, 0, |i| 300 + (i * 37) % 400);
        let b = window(1000, 0, |i| 200 + (i * 13) % 100);
        assert_eq!(evaluate(&settings, &a, &b), Verdict::Pass);
    }

    #[test]
    fn mann_whitney_detects_a_shift_and_not_noise() {
        let stable: Vec<u64> = (0..300).map(|i| 10_000 + (i * 7919) % 3000).collect();
        let same: Vec<u64> = (0..100).map(|i| 10_000 + (i * 104_729) % 3000).collect();
        let slower: Vec<u64> = same.iter().map(|v| v + 2500).collect();
        assert!(mann_whitney_greater(&same, &stable) > 0.05);
        assert!(mann_whitney_greater(&slower, &stable) < 1e-6);
        let settings = Analysis::default();
        let w = |v: &[u64]| Window { requests: v.len() as u64, failed: 0, latencies: v.to_vec() };
        assert!(matches!(compare_latencies(&settings, &w(&slower), &w(&stable)), Verdict::Fail(_)));
        assert_eq!(compare_latencies(&settings, &w(&same), &w(&stable)), Verdict::Pass);
        assert!((erfc(0.0) - 1.0).abs() < 1e-7 && (erfc(1.0) - 0.157_299_207).abs() < 1e-6);
    }
}
