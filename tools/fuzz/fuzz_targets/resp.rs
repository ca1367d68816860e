//! Feeds arbitrary bytes to the server's RESP parser (`tools/src/server/resp.rs`,
//! included by path: it depends on std only) and checks what it answers.

#![no_main]

#[allow(dead_code)]
#[path = "../../src/server/resp.rs"]
mod resp;

use libfuzzer_sys::fuzz_target;
use resp::{Args, Limits, Parsed, parse};

/// The first input byte picks the limits, so that small and large bounds both get hit.
fn limits(selector: u8) -> Limits {
    match selector % 3 {
        0 => Limits {
            bulk_len_max: 16,
            args_max: 4,
            request_len_max: 256,
        },
        1 => Limits {
            bulk_len_max: 16 * 1024,
            args_max: 10,
            request_len_max: 64 * 1024,
        },
        _ => Limits {
            bulk_len_max: 16 << 20,
            args_max: 1 << 20,
            request_len_max: usize::MAX,
        },
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&selector, input)) = data.split_first() else {
        return;
    };
    let limits = limits(selector);
    // Parse the whole input the way a connection does: command after command.
    let mut at = 0;
    while at < input.len() {
        match parse(&input[at..], &limits) {
            Ok(Parsed::Command { args, len }) => {
                assert!(len > 0 && at + len <= input.len());
                match args {
                    Args::Ranges(ranges) => {
                        assert!(!ranges.is_empty() && ranges.len() <= limits.args_max);
                        for r in ranges {
                            assert!(r.start <= r.end && r.end <= len);
                            assert!(r.end - r.start <= limits.bulk_len_max);
                        }
                    }
                    Args::Owned(words) => {
                        assert!(!words.is_empty() && words.len() <= limits.args_max);
                        assert!(words.iter().all(|w| w.len() <= limits.bulk_len_max));
                    }
                }
                at += len;
            }
            Ok(Parsed::Skip { len }) => {
                assert!(len > 0 && at + len <= input.len());
                at += len;
            }
            Ok(Parsed::Incomplete { len_min }) => {
                assert!(len_min > input.len() - at);
                assert!(len_min <= limits.request_len_max.max(input.len() - at + 1));
                break;
            }
            Err(e) => {
                assert!(e.to_string().starts_with("Protocol error: "));
                break;
            }
        }
    }
});
