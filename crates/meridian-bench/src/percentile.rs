//! Percentiles over a sorted vector of latencies: exact, and simple enough to trust.

/// The `p`-th percentile (0 to 100) of `sorted`, which must be in ascending order, by the
/// nearest-rank method: the smallest value with at least `p`% of the samples at or below it.
/// `None` when there are no samples.
pub fn percentile(sorted: &[u64], p: f64) -> Option<u64> {
    if sorted.is_empty() {
        return None;
    }
    let p = p.clamp(0.0, 100.0);
    // Rank is 1-based; p = 0 means the minimum.
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    let index = rank.saturating_sub(1).min(sorted.len() - 1);
    sorted.get(index).copied()
}

#[cfg(test)]
mod tests {
    use super::percentile;

    #[test]
    fn empty_has_no_percentiles() {
        assert_eq!(percentile(&[], 50.0), None);
    }

    #[test]
    fn nearest_rank_on_one_to_hundred() {
        let v: Vec<u64> = (1..=100).collect();
        assert_eq!(percentile(&v, 0.0), Some(1));
        assert_eq!(percentile(&v, 50.0), Some(50));
        assert_eq!(percentile(&v, 90.0), Some(90));
        assert_eq!(percentile(&v, 99.0), Some(99));
        assert_eq!(percentile(&v, 100.0), Some(100));
    }

    #[test]
    fn small_samples_round_up() {
        let v = [10, 20, 30];
        assert_eq!(percentile(&v, 50.0), Some(20));
        assert_eq!(percentile(&v, 99.0), Some(30));
        assert_eq!(percentile(&[7], 99.9), Some(7));
    }

    #[test]
    fn out_of_range_p_is_clamped() {
        let v = [1, 2, 3];
        assert_eq!(percentile(&v, -5.0), Some(1));
        assert_eq!(percentile(&v, 250.0), Some(3));
    }
}
