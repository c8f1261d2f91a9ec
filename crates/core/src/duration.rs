//! How Mobius writes a length of time for people: one format for the CLI and the UI.

/// A duration in milliseconds as people read it: `0.42s`, `12.3s`, `3m 05s`, `2h 03m`, `1d 04h`.
///
/// Sub-second precision fades as durations grow: nobody needs the tenths of an hour-long run.
pub fn human(ms: u64) -> String {
    let s = ms / 1000;
    match ms {
        0..10_000 => format!("{:.2}s", ms as f64 / 1000.0),
        10_000..60_000 => format!("{:.1}s", ms as f64 / 1000.0),
        60_000..3_600_000 => format!("{}m {:02}s", s / 60, s % 60),
        3_600_000..86_400_000 => format!("{}h {:02}m", s / 3600, s % 3600 / 60),
        _ => format!("{}d {:02}h", s / 86_400, s % 86_400 / 3600),
    }
}

/// [`human`] for a signed span (a clock that went back counts as zero).
pub fn human_signed(ms: i64) -> String {
    human(ms.max(0) as u64)
}

#[cfg(test)]
mod tests {
    use super::human;

    #[test]
    fn durations_read_the_same_at_every_scale() {
        assert_eq!(human(0), "0.00s");
        assert_eq!(human(420), "0.42s");
        assert_eq!(human(9_994), "9.99s");
        assert_eq!(human(12_340), "12.3s");
        assert_eq!(human(185_000), "3m 05s");
        assert_eq!(human(7_380_000), "2h 03m");
        assert_eq!(human(100_800_000), "1d 04h");
    }
}
