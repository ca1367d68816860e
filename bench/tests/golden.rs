//! The `.hgrm` writer against HdrHistogram's reference implementation.
//!
//! Why a golden file: the reference is Java (Gil Tene's HdrHistogram), which CI does not
//! have and should not download on every run. So the inputs are histograms whose encoded
//! form (V2, deflated, base64: the format the reference's interval logs and
//! `decodeFromCompressedByteBuffer` use) is checked in under `tests/golden/`, and each
//! `.hgrm` beside it was written from that same encoding by the reference itself
//! (`golden/Golden.java`, run by `golden/regenerate.sh` with Debian's
//! libhdrhistogram-java 2.1.11). The test decodes the same bytes with the Rust crate,
//! writes our `.hgrm`, and compares byte for byte: any drift in layout, rounding,
//! percentile steps or the footer fails it.

use std::path::{Path, PathBuf};

use hdrhistogram::Histogram;
use ringkv_bench::report;

const CASES: [&str; 3] = ["latency", "two-digits", "one-value"];

fn golden(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden")
        .join(name)
}

#[test]
fn hgrm_matches_the_reference_implementation_byte_for_byte() {
    for name in CASES {
        let encoded = std::fs::read_to_string(golden(&format!("{name}.b64"))).unwrap();
        let h = report::from_base64(&encoded).unwrap();
        let reference = std::fs::read_to_string(golden(&format!("{name}.hgrm"))).unwrap();
        let ours = report::hgrm(&h);
        if ours != reference {
            let line = ours
                .lines()
                .zip(reference.lines())
                .position(|(a, b)| a != b)
                .unwrap_or(ours.lines().count().min(reference.lines().count()));
            panic!(
                "{name}.hgrm differs from the reference from line {}:\nours:      {:?}\nreference: {:?}",
                line + 1,
                ours.lines().nth(line),
                reference.lines().nth(line)
            );
        }
        // And the inputs are what they claim to be (not empty, not trivial).
        assert!(!h.is_empty());
    }
}

/// Rewrites the encoded inputs (then run `tests/golden/regenerate.sh`).
#[test]
#[ignore = "rewrites the golden inputs"]
fn write_golden_inputs() {
    // Latency-like: a fast mode and a long tail over the rig's own bounds.
    let mut latency = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).unwrap();
    let mut x = 0x2545_f491_4f6c_dd1d_u64;
    for _ in 0..200_000 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let u = (x >> 11) as f64 / (1u64 << 53) as f64;
        let v = 25.0 * (1.0 / (1.0 - u)).powf(0.9);
        latency.record((v as u64).clamp(1, 60_000_000)).unwrap();
    }
    // Two significant digits, few values far apart.
    let mut two = Histogram::<u64>::new_with_bounds(1, 3_600_000_000, 2).unwrap();
    for (v, n) in [(1, 5), (2, 1), (3, 7), (1_000, 2), (1_000_000, 1)] {
        two.record_n(v, n).unwrap();
    }
    let mut one = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).unwrap();
    one.record(42).unwrap();
    for (name, h) in CASES.iter().zip([latency, two, one]) {
        std::fs::write(golden(&format!("{name}.b64")), report::to_base64(&h) + "\n").unwrap();
    }
}
