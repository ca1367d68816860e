//! The RESP parser (the server's own module, included by path) on arbitrary bytes:
//! it never panics, and always answers a command, a skip, a need for more bytes, or an
//! error, consistently with every prefix and extension of its input.

#[allow(dead_code)]
#[path = "../src/server/resp.rs"]
mod resp;

use proptest::prelude::*;
use resp::{Args, Limits, Parsed, parse};

const LIMITS: Limits = Limits {
    bulk_len_max: 64,
    args_max: 8,
    request_len_max: 512,
};

/// Bytes that look like RESP often enough to reach deep into the parser.
fn resp_like() -> impl Strategy<Value = Vec<u8>> {
    let token = prop_oneof![
        Just(b"*".to_vec()),
        Just(b"$".to_vec()),
        Just(b"\r\n".to_vec()),
        Just(b"\n".to_vec()),
        Just(b"\"".to_vec()),
        Just(b"'".to_vec()),
        Just(b"\\x4".to_vec()),
        Just(b" ".to_vec()),
        (0u32..100).prop_map(|n| n.to_string().into_bytes()),
        Just(b"-1".to_vec()),
        Just(b"SET".to_vec()),
        proptest::collection::vec(any::<u8>(), 0..8),
    ];
    proptest::collection::vec(token, 0..40).prop_map(|t| t.concat())
}

/// A well-formed multibulk request and its arguments.
fn request() -> impl Strategy<Value = (Vec<u8>, Vec<Vec<u8>>)> {
    proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..20), 1..6).prop_map(
        |args| {
            let mut bytes = format!("*{}\r\n", args.len()).into_bytes();
            for a in &args {
                bytes.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
                bytes.extend_from_slice(a);
                bytes.extend_from_slice(b"\r\n");
            }
            (bytes, args)
        },
    )
}

fn check(input: &[u8]) {
    match parse(input, &LIMITS) {
        Ok(Parsed::Command { args, len }) => {
            assert!(len > 0 && len <= input.len());
            let count = match &args {
                Args::Ranges(r) => {
                    assert!(r.iter().all(|r| r.start <= r.end && r.end <= len));
                    r.len()
                }
                Args::Owned(o) => o.len(),
            };
            assert!((1..=LIMITS.args_max).contains(&count));
            assert!(len <= LIMITS.request_len_max.max(resp::INLINE_LEN_MAX));
            // Bytes after a whole command change nothing about it.
            let mut longer = input.to_vec();
            longer.extend_from_slice(b"*1\r\n");
            assert_eq!(parse(&longer, &LIMITS), parse(input, &LIMITS));
        }
        Ok(Parsed::Skip { len }) => assert!(len > 0 && len <= input.len()),
        Ok(Parsed::Incomplete { len_min }) => {
            assert!(len_min > input.len());
            assert!(len_min <= LIMITS.request_len_max.max(input.len() + 1));
        }
        Err(e) => assert!(e.to_string().starts_with("Protocol error: ")),
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(4000))]

    #[test]
    fn arbitrary_bytes_never_panic(input in proptest::collection::vec(any::<u8>(), 0..300)) {
        check(&input);
    }

    #[test]
    fn resp_like_bytes_never_panic(input in resp_like()) {
        check(&input);
    }

    #[test]
    fn well_formed_requests_parse_whole_and_their_prefixes_ask_for_more(
        (bytes, args) in request(), cut in any::<prop::sample::Index>()
    ) {
        match parse(&bytes, &LIMITS) {
            Ok(Parsed::Command { args: Args::Ranges(r), len }) => {
                prop_assert_eq!(len, bytes.len());
                let got: Vec<Vec<u8>> = r.into_iter().map(|r| bytes[r].to_vec()).collect();
                prop_assert_eq!(got, args);
            }
            other => prop_assert!(false, "{:?}", other),
        }
        let cut = cut.index(bytes.len());
        let prefix = parse(&bytes[..cut], &LIMITS);
        prop_assert!(matches!(prefix, Ok(Parsed::Incomplete { .. })), "{:?}", prefix);
    }
}
