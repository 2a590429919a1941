//! Sorting for the few items vault-luks ever sorts (keyslots, mount points, interfaces, config
//! keys, file names): an insertion sort. std's sorts are built for large slices, and each
//! element type and comparison instantiates its own quicksort or driftsort (3 to 4 KiB each,
//! about 20 KiB for six call sites); this is a few dozen bytes per call site, stable, and
//! quadratic only in lengths we never see.

/// Sorts `v` so that no element is `less` than one before it; equal elements keep their order.
pub fn sort_by<T>(v: &mut [T], less: impl Fn(&T, &T) -> bool) {
    for i in 1..v.len() {
        let mut j = i;
        while j > 0 && less(&v[j], &v[j - 1]) {
            v.swap(j, j - 1);
            j -= 1;
        }
    }
}

/// Ascending, stable.
pub fn sort<T: Ord>(v: &mut [T]) {
    sort_by(v, |a, b| a < b);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sorts_like_std_and_keeps_equal_elements_in_order() {
        let mut seed = 0x9e3779b9u32;
        for len in 0..40 {
            let mut v: Vec<(u8, usize)> = (0..len)
                .map(|i| {
                    seed ^= seed << 13;
                    seed ^= seed >> 17;
                    seed ^= seed << 5;
                    ((seed % 7) as u8, i)
                })
                .collect();
            let mut expected = v.clone();
            expected.sort_by_key(|p| p.0);
            sort_by(&mut v, |a, b| a.0 < b.0);
            assert_eq!(v, expected);
        }
        let mut words = vec!["b", "a", "c", "a"];
        sort(&mut words);
        assert_eq!(words, ["a", "a", "b", "c"]);
    }
}
