//! Prometheus remote write 1.0: a snappy-compressed (block format) protobuf
//! `WriteRequest` of time series with labels and samples. The messages are declared
//! here with `prost`'s derive (the fields Mobius reads; exemplars, histograms and
//! metadata are skipped by tag).

use mobius_series::labels::{Labels, METRIC_NAME};
use mobius_series::{valid_label_name, valid_metric_name};

#[derive(Clone, PartialEq, prost::Message)]
pub struct WriteRequest {
    #[prost(message, repeated, tag = "1")]
    pub timeseries: Vec<TimeSeries>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct TimeSeries {
    #[prost(message, repeated, tag = "1")]
    pub labels: Vec<Label>,
    #[prost(message, repeated, tag = "2")]
    pub samples: Vec<Sample>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct Label {
    #[prost(string, tag = "1")]
    pub name: String,
    #[prost(string, tag = "2")]
    pub value: String,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct Sample {
    #[prost(double, tag = "1")]
    pub value: f64,
    #[prost(int64, tag = "2")]
    pub timestamp: i64,
}

/// Why a write request was refused (the sender should not retry: HTTP 400).
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum RemoteWriteError {
    #[error("the body is not snappy-compressed: {0}")]
    Snappy(String),
    #[error("the body is not a remote write request: {0}")]
    Protobuf(String),
    #[error("series {index}: {message}")]
    Series { index: usize, message: String },
    #[error("the body would decompress to {size} bytes, more than the limit of {MAX_DECOMPRESSED} bytes (64 MiB)")]
    TooLarge { size: usize },
}

/// The most a remote-write body may decompress to. Snappy states the size first, so
/// a few bytes can announce gigabytes; it is checked before anything is allocated.
pub const MAX_DECOMPRESSED: usize = 64 << 20;

/// Decodes a request body into series with their samples; every series is checked
/// (a metric name, valid label names, no name twice) before anything is stored.
pub fn decode_write_request(body: &[u8]) -> Result<Vec<mobius_series::Series>, RemoteWriteError> {
    let size = snap::raw::decompress_len(body).map_err(|e| RemoteWriteError::Snappy(e.to_string()))?;
    if size > MAX_DECOMPRESSED {
        return Err(RemoteWriteError::TooLarge { size });
    }
    let raw = snap::raw::Decoder::new().decompress_vec(body).map_err(|e| RemoteWriteError::Snappy(e.to_string()))?;
    let request = <WriteRequest as prost::Message>::decode(raw.as_slice())
        .map_err(|e| RemoteWriteError::Protobuf(e.to_string()))?;
    let mut out = Vec::with_capacity(request.timeseries.len());
    for (index, ts) in request.timeseries.into_iter().enumerate() {
        let fail = |message: String| RemoteWriteError::Series { index, message };
        let mut pairs = Vec::with_capacity(ts.labels.len());
        for l in ts.labels {
            if !valid_label_name(&l.name) {
                return Err(fail(format!("invalid label name `{}`", l.name)));
            }
            if pairs.iter().any(|(n, _): &(String, String)| *n == l.name) {
                return Err(fail(format!("label `{}` given twice", l.name)));
            }
            pairs.push((l.name, l.value));
        }
        let labels = Labels::new(pairs);
        match labels.metric() {
            Some(name) if valid_metric_name(name) => {}
            Some(name) => return Err(fail(format!("invalid metric name `{name}`"))),
            None => return Err(fail(format!("no `{METRIC_NAME}` label"))),
        }
        let mut samples: Vec<(i64, f64)> = ts.samples.into_iter().map(|s| (s.timestamp, s.value)).collect();
        samples.sort_by_key(|s| s.0);
        out.push((labels, samples));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost::Message;

    fn body(request: &WriteRequest) -> Vec<u8> {
        snap::raw::Encoder::new().compress_vec(&request.encode_to_vec()).unwrap()
    }

    fn series(labels: &[(&str, &str)], samples: &[(i64, f64)]) -> TimeSeries {
        TimeSeries {
            labels: labels.iter().map(|(n, v)| Label { name: n.to_string(), value: v.to_string() }).collect(),
            samples: samples.iter().map(|(t, v)| Sample { value: *v, timestamp: *t }).collect(),
        }
    }

    #[test]
    fn requests_decode_and_bad_ones_say_which_series() {
        let ok =
            WriteRequest { timeseries: vec![series(&[("__name__", "up"), ("job", "a")], &[(2000, 1.0), (1000, 0.0)])] };
        let decoded = decode_write_request(&body(&ok)).unwrap();
        assert_eq!(
            decoded,
            [(Labels::from_pairs(&[("__name__", "up"), ("job", "a")]), vec![(1000, 0.0), (2000, 1.0)])]
        );
        let bad =
            WriteRequest { timeseries: vec![series(&[("__name__", "up")], &[]), series(&[("job", "a")], &[(1, 1.0)])] };
        assert_eq!(
            decode_write_request(&body(&bad)),
            Err(RemoteWriteError::Series { index: 1, message: "no `__name__` label".into() })
        );
        assert!(matches!(decode_write_request(b"not snappy"), Err(RemoteWriteError::Snappy(_))));
    }

    /// Found by the `remote_write` fuzz target: eight bytes announcing 2.2 GB made the
    /// decoder allocate it all. Refused before anything is allocated, naming the limit.
    #[test]
    fn a_body_announcing_gigabytes_is_refused_before_allocating() {
        let body = [0xf3, 0xf3, 0x9e, 0x9e, 0x08, 0x00, 0xf3, 0x60];
        let err = decode_write_request(&body).unwrap_err();
        assert!(matches!(err, RemoteWriteError::TooLarge { .. }), "{err:?}");
        assert!(err.to_string().contains("limit of 67108864 bytes"), "{err}");
    }
}
