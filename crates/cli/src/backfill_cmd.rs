//! `mobius backfill FILE --data DIR`: loads an OpenMetrics file with timestamps (as
//! `promtool tsdb create-blocks-from openmetrics` reads it) into the monitor's store,
//! then persists it as blocks. The server must not be running on the same data.

use clap::Args;
use mobius_monitor::exposition::{parse_series, Entry, Format, Parser};
use mobius_series::Labels;
use mobius_tsdb::{Db, DbOptions};
use std::collections::HashMap;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Debug, Args)]
pub struct BackfillArgs {
    /// An OpenMetrics file whose samples all carry timestamps, each series in time order.
    file: PathBuf,
    /// The server's data directory (the store is DATA/monitor).
    #[arg(long = "data", value_name = "DIR", default_value = "mobius-data")]
    data: PathBuf,
}

pub fn main(args: BackfillArgs) -> ExitCode {
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("mobius: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: &BackfillArgs) -> Result<(), String> {
    let text = std::fs::read_to_string(&args.file).map_err(|e| format!("cannot read {}: {e}", args.file.display()))?;
    // Blocks are cut once everything is in: the store's own thread must not cut them
    // while series are still being loaded one after another.
    let options = DbOptions {
        sync_interval: std::time::Duration::from_secs(24 * 3600),
        ..DbOptions::new(args.data.join("monitor"))
    };
    let db = Db::open(options).map_err(|e| e.to_string())?;
    let mut refs: HashMap<&str, u32> = HashMap::new();
    let mut batch = Vec::with_capacity(10_000);
    let (mut samples, mut refused) = (0usize, 0usize);
    for entry in Parser::new(&text, Format::OpenMetrics) {
        let entry = entry.map_err(|e| format!("{}:{e}", args.file.display()))?;
        let Entry::Sample(sample) = entry else { continue };
        let Some(t) = sample.timestamp_ms else {
            return Err(format!(
                "{}: `{}` has no timestamp; backfilled samples need one",
                args.file.display(),
                sample.series
            ));
        };
        let series = match refs.get(sample.series) {
            Some(r) => *r,
            None => {
                let labels = Labels::new(parse_series(sample.series)?);
                let r = db.series_ref(&labels).map_err(|e| e.to_string())?;
                refs.insert(sample.series, r);
                r
            }
        };
        batch.push((series, t, sample.value));
        if batch.len() == batch.capacity() {
            let stats = db.append_refs(&batch).map_err(|e| e.to_string())?;
            samples += stats.appended;
            refused += stats.out_of_order + stats.duplicate + stats.out_of_bounds;
            batch.clear();
        }
    }
    let stats = db.append_refs(&batch).map_err(|e| e.to_string())?;
    samples += stats.appended;
    refused += stats.out_of_order + stats.duplicate + stats.out_of_bounds;
    db.sync().map_err(|e| e.to_string())?;
    db.maintain().map_err(|e| e.to_string())?;
    let after = db.stats();
    println!(
        "{samples} samples of {} series stored ({refused} refused: out of order, duplicate or older than the store's blocks); {} blocks hold {} samples in {} bytes, {} samples stay in the head",
        refs.len(),
        after.blocks,
        after.block_samples,
        after.block_bytes,
        after.samples
    );
    Ok(())
}
