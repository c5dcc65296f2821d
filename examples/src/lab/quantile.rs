//! How far a measured percentile can be trusted: a distribution-free 95 % confidence interval
//! from order statistics.
//!
//! Of `n` calls sorted by latency, the number below the true quantile `q` is binomial
//! `B(n, q)`, so the `l`-th and `u`-th slowest calls bracket the quantile with the probability
//! that this count falls between them. For p99 the upper rank exists only from 368 calls on:
//! below that, even the slowest call may be faster than the true p99, and the p99 measured
//! is a rough figure (pool-lab marks it `~`).

/// The confidence of the interval.
pub const CONFIDENCE: f64 = 0.95;

/// The 1-based ranks `(l, u)` in `n` sorted values whose values bracket the `q` quantile with
/// at least [`CONFIDENCE`]; `None` for a side the sample is too small to bound.
pub fn ranks(n: usize, q: f64) -> (Option<usize>, Option<usize>) {
    if n == 0 || !(0.0..1.0).contains(&q) || q == 0.0 {
        return (None, None);
    }
    let tail = (1.0 - CONFIDENCE) / 2.0;
    // cdf[k] = P(X <= k) for X ~ B(n, q), summed in log space (q^n underflows).
    let (ln_q, ln_p) = (q.ln(), (1.0 - q).ln());
    let mut ln_pmf = n as f64 * ln_p;
    let mut cdf = 0.0;
    let (mut lower, mut upper) = (None, None);
    for k in 0..n {
        cdf += ln_pmf.exp();
        // P(X <= k) = F(k): rank k + 1 is a lower bound while F(k) <= tail.
        if cdf <= tail {
            lower = Some(k + 1);
        }
        if upper.is_none() && cdf >= 1.0 - tail {
            upper = Some(k + 1);
            break;
        }
        ln_pmf += ((n - k) as f64).ln() - ((k + 1) as f64).ln() + ln_q - ln_p;
    }
    (lower, upper)
}

/// The fewest values whose `q` quantile has an upper confidence bound (368 for p99).
pub fn min_count(q: f64) -> usize {
    // The upper rank exists when P(X <= n - 1) = 1 - q^n >= 1 - tail.
    let tail = (1.0 - CONFIDENCE) / 2.0;
    (tail.ln() / q.ln()).ceil() as usize
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn p99_needs_368_values_for_an_upper_bound() {
        // 1 - 0.99^367 = 0.97497 < 0.975: the slowest of 367 is not yet a bound.
        assert_eq!(min_count(0.99), 368);
        assert_eq!(ranks(367, 0.99).1, None);
        assert_eq!(ranks(368, 0.99).1, Some(368));
        assert_eq!(ranks(160, 0.99), (Some(156), None));
    }

    #[test]
    fn the_median_of_100_lies_between_the_40th_and_61st() {
        // The textbook ranks for n = 100, q = 0.5 at 95 %: 40 and 61.
        assert_eq!(ranks(100, 0.5), (Some(40), Some(61)));
    }

    #[test]
    fn p99_of_2000_is_bracketed_near_the_top() {
        // Exact binomial sums (in rational arithmetic) give 1971 and 1989.
        assert_eq!(ranks(2000, 0.99), (Some(1971), Some(1989)));
    }
}
