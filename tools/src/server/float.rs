//! INCRBYFLOAT's arithmetic, exactly as Redis 7.0 does it: in the platform's C
//! `long double` (`csrc/long_double.c`, compiled by `build.rs`), since f64 prints
//! other digits (0.1 + 0.2 is "0.3" in Redis, 0.30000000000000004 in f64).

use std::ffi::{c_char, c_long};

unsafe extern "C" {
    fn ringkv_incr_by_float(
        current: *const c_char,
        current_len: usize,
        incr: *const c_char,
        incr_len: usize,
        out: *mut c_char,
        out_cap: usize,
    ) -> c_long;
    fn ringkv_long_double_chars_max() -> usize;
}

/// Why an increment has no result.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FloatError {
    /// The key's value, or the increment, is not a float Redis accepts.
    NotAFloat,
    /// The sum is NaN or infinite.
    NanOrInfinity,
}

/// `current` (None: a missing key, 0) plus `incr`, as the text Redis would store.
pub fn incr_by_float(current: Option<&[u8]>, incr: &[u8]) -> Result<Vec<u8>, FloatError> {
    // SAFETY: a pure function of no arguments.
    let cap = unsafe { ringkv_long_double_chars_max() };
    let mut out = vec![0u8; cap];
    let (current_ptr, current_len) =
        current.map_or((std::ptr::null(), 0), |c| (c.as_ptr(), c.len()));
    // SAFETY: every pointer is valid for the length passed with it (a null `current`
    // means a missing key and is never read); the C side reads at most those lengths
    // and writes at most `cap` bytes into `out`, which holds `cap`.
    let len = unsafe {
        ringkv_incr_by_float(
            current_ptr.cast(),
            current_len,
            incr.as_ptr().cast(),
            incr.len(),
            out.as_mut_ptr().cast(),
            cap,
        )
    };
    match len {
        -1 | -2 => Err(FloatError::NotAFloat),
        -3 => Err(FloatError::NanOrInfinity),
        n if n >= 0 => {
            out.truncate(n as usize);
            Ok(out)
        }
        // -4: no room, which Redis's own buffer of this size never lacks either.
        _ => Err(FloatError::NanOrInfinity),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn add(current: Option<&str>, incr: &str) -> Result<String, FloatError> {
        incr_by_float(current.map(str::as_bytes), incr.as_bytes())
            .map(|v| String::from_utf8(v).unwrap())
    }

    #[test]
    fn sums_print_as_redis_prints_them() {
        assert_eq!(add(None, "10.5").as_deref(), Ok("10.5"));
        assert_eq!(add(Some("10.5"), "0.1").as_deref(), Ok("10.6"));
        assert_eq!(add(Some("0.1"), "0.2").as_deref(), Ok("0.3"));
        assert_eq!(add(Some("5.0e3"), "2.0e2").as_deref(), Ok("5200"));
        assert_eq!(add(Some("1"), "-1").as_deref(), Ok("0"));
        assert_eq!(
            add(Some("17179869184"), "1.5").as_deref(),
            Ok("17179869185.5")
        );
        assert_eq!(add(Some("1"), "-1.1").as_deref(), Ok("-0.1"));
    }

    #[test]
    fn what_redis_refuses_is_refused() {
        assert_eq!(add(Some("x"), "1"), Err(FloatError::NotAFloat));
        assert_eq!(add(Some("1"), " 1"), Err(FloatError::NotAFloat));
        assert_eq!(add(Some("1"), "1 "), Err(FloatError::NotAFloat));
        assert_eq!(add(Some("1"), ""), Err(FloatError::NotAFloat));
        assert_eq!(add(Some("1"), "nan"), Err(FloatError::NotAFloat));
        assert_eq!(add(Some("1"), "inf"), Err(FloatError::NanOrInfinity));
        assert_eq!(
            add(Some("1e4932"), "1e4932"),
            Err(FloatError::NanOrInfinity)
        );
    }
}
