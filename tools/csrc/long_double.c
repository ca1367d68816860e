/*
 * INCRBYFLOAT's arithmetic as Redis 7.0 does it, in C because it needs the platform's
 * `long double` (x87 80-bit on x86-64), which Rust does not have: parsing as Redis's
 * string2ld, adding, and printing as its ld2string(LD_STR_HUMAN). Byte for byte the
 * same digits, which f64 cannot give (0.1 + 0.2 prints 0.3 here, not
 * 0.30000000000000004).
 */
#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Redis's MAX_LONG_DOUBLE_CHARS. */
#define LONG_DOUBLE_CHARS_MAX (5 * 1024)

/* Redis's string2ld: 1 and the value, or 0 when `s` is not a float Redis accepts. */
static int parse_long_double(const char *s, size_t len, long double *out) {
    char buf[LONG_DOUBLE_CHARS_MAX];
    char *end;
    long double value;
    if (len == 0 || len >= sizeof(buf)) return 0;
    memcpy(buf, s, len);
    buf[len] = '\0';
    errno = 0;
    value = strtold(buf, &end);
    if (isspace((unsigned char)buf[0]) || end[0] != '\0' ||
        (errno == ERANGE &&
         (value == HUGE_VALL || value == -HUGE_VALL || fpclassify(value) == FP_ZERO)) ||
        isnan(value))
        return 0;
    *out = value;
    return 1;
}

/*
 * current (NULL: the key is missing, 0) + incr, printed into out (at least
 * LONG_DOUBLE_CHARS_MAX bytes). Answers the length printed, or -1: current is not a
 * float, -2: incr is not a float, -3: the sum is NaN or infinite, -4: no room.
 */
long ringkv_incr_by_float(const char *current, size_t current_len, const char *incr,
                          size_t incr_len, char *out, size_t out_cap) {
    long double value = 0, delta;
    int len;
    if (current != NULL && !parse_long_double(current, current_len, &value)) return -1;
    if (!parse_long_double(incr, incr_len, &delta)) return -2;
    value += delta;
    if (isnan(value) || isinf(value)) return -3;
    len = snprintf(out, out_cap, "%.17Lf", value);
    if (len < 0 || (size_t)len + 1 > out_cap) return -4;
    /* Trailing zeros after the point go, then the point itself; "-0" is "0". */
    if (strchr(out, '.') != NULL) {
        char *p = out + len - 1;
        while (*p == '0') {
            p--;
            len--;
        }
        if (*p == '.') len--;
    }
    if (len == 2 && out[0] == '-' && out[1] == '0') {
        out[0] = '0';
        len = 1;
    }
    return len;
}

/* The buffer size ringkv_incr_by_float needs. */
size_t ringkv_long_double_chars_max(void) { return LONG_DOUBLE_CHARS_MAX; }
