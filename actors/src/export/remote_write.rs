//! Prometheus remote-write 1.0 on the wire: a `prometheus.WriteRequest` protobuf, compressed
//! with Snappy's block format (not the framed stream format), as every receiver (Prometheus's
//! `/api/v1/write`, VictoriaMetrics, Thanos, Mimir) expects it.
//!
//! The message is tiny (labels and samples only, no metadata or exemplars), so it is encoded by
//! hand here instead of pulling in a protobuf code generator:
//!
//! ```text
//! WriteRequest { repeated TimeSeries timeseries = 1; }
//! TimeSeries   { repeated Label labels = 1; repeated Sample samples = 2; }
//! Label        { string name = 1; string value = 2; }
//! Sample       { double value = 1; int64 timestamp = 2; }   // milliseconds since the epoch
//! ```
//!
//! Receivers require each series' labels sorted by name (with `__name__` among them) and its
//! samples in time order; [`Series::new`] sorts both.

/// The HTTP headers a remote-write request carries (besides `Content-Length`).
pub const HEADERS: [(&str, &str); 3] = [
    ("Content-Encoding", "snappy"),
    ("Content-Type", "application/x-protobuf"),
    ("X-Prometheus-Remote-Write-Version", "0.1.0"),
];

/// One time series: its labels (`__name__` included) and samples `(value, unix ms)`.
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    labels: Vec<(String, String)>,
    samples: Vec<(f64, i64)>,
}

impl Series {
    /// A series with labels sorted by name and samples sorted by time.
    pub fn new(mut labels: Vec<(String, String)>, mut samples: Vec<(f64, i64)>) -> Series {
        labels.sort_by(|a, b| a.0.cmp(&b.0));
        samples.sort_by_key(|s| s.1);
        Series { labels, samples }
    }

    pub fn labels(&self) -> &[(String, String)] {
        &self.labels
    }

    pub fn samples(&self) -> &[(f64, i64)] {
        &self.samples
    }
}

/// The protobuf encoding of a `WriteRequest` holding `series`.
pub fn encode(series: &[Series]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut ts = Vec::new();
    let mut inner = Vec::new();
    for s in series {
        ts.clear();
        for (name, value) in &s.labels {
            inner.clear();
            put_bytes(&mut inner, 1, name.as_bytes());
            put_bytes(&mut inner, 2, value.as_bytes());
            put_bytes(&mut ts, 1, &inner);
        }
        for &(value, at_ms) in &s.samples {
            inner.clear();
            put_key(&mut inner, 1, 1);
            inner.extend_from_slice(&value.to_le_bytes());
            put_key(&mut inner, 2, 0);
            // int64 is a plain varint of the two's complement (10 bytes when negative).
            put_varint(&mut inner, at_ms as u64);
            put_bytes(&mut ts, 2, &inner);
        }
        put_bytes(&mut out, 1, &ts);
    }
    out
}

/// The body of a remote-write request: [`encode`] compressed with Snappy's block format.
pub fn body(series: &[Series]) -> Result<Vec<u8>, snap::Error> {
    snap::raw::Encoder::new().compress_vec(&encode(series))
}

fn put_key(out: &mut Vec<u8>, field: u32, wire_type: u8) {
    put_varint(out, u64::from(field << 3 | u32::from(wire_type)));
}

fn put_bytes(out: &mut Vec<u8>, field: u32, bytes: &[u8]) {
    put_key(out, field, 2);
    put_varint(out, bytes.len() as u64);
    out.extend_from_slice(bytes);
}

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A minimal protobuf reader, independent of the encoder: (field, wire type, payload).
    fn fields(mut b: &[u8]) -> Vec<(u32, u8, Vec<u8>)> {
        fn varint(b: &mut &[u8]) -> u64 {
            let (mut v, mut shift) = (0u64, 0);
            loop {
                let byte = b[0];
                *b = &b[1..];
                v |= u64::from(byte & 0x7f) << shift;
                if byte < 0x80 {
                    return v;
                }
                shift += 7;
            }
        }
        let mut out = Vec::new();
        while !b.is_empty() {
            let key = varint(&mut b);
            let (field, wt) = ((key >> 3) as u32, (key & 7) as u8);
            let payload = match wt {
                0 => varint(&mut b).to_le_bytes().to_vec(),
                1 => {
                    let p = b[..8].to_vec();
                    b = &b[8..];
                    p
                }
                2 => {
                    let n = varint(&mut b) as usize;
                    let p = b[..n].to_vec();
                    b = &b[n..];
                    p
                }
                other => panic!("wire type {other}"),
            };
            out.push((field, wt, payload));
        }
        out
    }

    type Decoded = Vec<(Vec<(String, String)>, Vec<(f64, i64)>)>;

    fn decode(bytes: &[u8]) -> Decoded {
        fields(bytes)
            .into_iter()
            .map(|(f, wt, ts)| {
                assert_eq!((f, wt), (1, 2), "WriteRequest.timeseries");
                let mut labels = Vec::new();
                let mut samples = Vec::new();
                for (f, wt, p) in fields(&ts) {
                    match (f, wt) {
                        (1, 2) => {
                            let l = fields(&p);
                            assert_eq!((l[0].0, l[1].0), (1, 2));
                            labels.push((
                                String::from_utf8(l[0].2.clone()).unwrap(),
                                String::from_utf8(l[1].2.clone()).unwrap(),
                            ));
                        }
                        (2, 2) => {
                            let s = fields(&p);
                            assert_eq!((s[0].0, s[0].1, s[1].0, s[1].1), (1, 1, 2, 0));
                            let value = f64::from_le_bytes(s[0].2.clone().try_into().unwrap());
                            let at = i64::from_le_bytes(s[1].2.clone().try_into().unwrap());
                            samples.push((value, at));
                        }
                        other => panic!("unexpected TimeSeries field {other:?}"),
                    }
                }
                (labels, samples)
            })
            .collect()
    }

    fn l(name: &str, value: &str) -> (String, String) {
        (name.to_string(), value.to_string())
    }

    #[test]
    fn a_write_request_decodes_back_with_sorted_labels_and_samples() {
        let series = vec![
            Series::new(
                vec![l("job", "4242"), l("__name__", "turingwatch_step_cpu_cores"), l("user", "al\"ice\n")],
                vec![(1.5, 1_700_000_010_000), (0.25, 1_700_000_000_000)],
            ),
            Series::new(vec![l("__name__", "x"), l("node", "n1")], vec![(-3.0e9, 1)]),
        ];
        let decoded = decode(&encode(&series));
        assert_eq!(
            decoded[0].0,
            [l("__name__", "turingwatch_step_cpu_cores"), l("job", "4242"), l("user", "al\"ice\n")]
        );
        assert_eq!(decoded[0].1, [(0.25, 1_700_000_000_000), (1.5, 1_700_000_010_000)]);
        assert_eq!(decoded[1], (vec![l("__name__", "x"), l("node", "n1")], vec![(-3.0e9, 1)]));
        assert_eq!(decoded.len(), 2);
    }

    #[test]
    fn known_bytes_of_one_tiny_series() {
        // Written out by hand from the protobuf spec: label {a=b}, sample {1.0, 2}.
        let bytes = encode(&[Series::new(vec![l("a", "b")], vec![(1.0, 2)])]);
        let label = [0x0a, 0x01, b'a', 0x12, 0x01, b'b'];
        let sample = [0x09, 0, 0, 0, 0, 0, 0, 0xf0, 0x3f, 0x10, 0x02];
        let mut ts = vec![0x0a, label.len() as u8];
        ts.extend_from_slice(&label);
        ts.extend_from_slice(&[0x12, sample.len() as u8]);
        ts.extend_from_slice(&sample);
        let mut expected = vec![0x0a, ts.len() as u8];
        expected.extend_from_slice(&ts);
        assert_eq!(bytes, expected);
    }

    #[test]
    fn the_body_is_snappy_block_format_of_the_protobuf() {
        let series: Vec<Series> = (0..200)
            .map(|i| Series::new(vec![l("__name__", "m"), l("job", &i.to_string())], vec![(i as f64, 1_000 * i)]))
            .collect();
        let raw = encode(&series);
        let compressed = body(&series).unwrap();
        assert!(compressed.len() < raw.len(), "repetitive labels compress");
        // The block format starts with the uncompressed length as a varint (no stream header).
        assert_ne!(&compressed[..4], b"\xff\x06\x00\x00");
        assert_eq!(snap::raw::Decoder::new().decompress_vec(&compressed).unwrap(), raw);
        assert_eq!(snap::raw::decompress_len(&compressed).unwrap(), raw.len());
    }
}
