/// Order statistics without a full sort: the thresholds of TIES' trim and Breadcrumbs' band, which
/// used to sort every tensor's magnitudes (O(n log n); 8 ViT-S task vectors took 40 s).
public enum Selection {
    /// The k-th largest of `values` (1-based; `values` is reordered): exactly `values.sorted(by: >)[k - 1]`
    /// for values without NaN. Quickselect with a median-of-three pivot and a three-way partition (runs of
    /// equal values, such as zeros, end a round at once); after 2·log₂(n) + 8 rounds the remaining range
    /// is sorted, so the worst case stays O(n log n).
    /// `rounds` (tests) overrides the number of partition rounds before the sort.
    public static func kthLargest(_ v: UnsafeMutableBufferPointer<Float>, _ k: Int, rounds: Int? = nil) -> Float {
        precondition(k >= 1 && k <= v.count, "kthLargest: k = \(k) for \(v.count) values")
        let target = k - 1  // its index in descending order
        var lo = 0, hi = v.count - 1
        var rounds = rounds ?? 2 * (Int.bitWidth - v.count.leadingZeroBitCount) + 8
        while lo < hi {
            if rounds == 0 {
                var rest = UnsafeMutableBufferPointer(rebasing: v[lo...hi])
                rest.sort(by: >)
                return v[target]
            }
            rounds -= 1
            let a = v[lo], b = v[lo + (hi - lo) / 2], c = v[hi]
            let p = max(min(a, b), min(max(a, b), c))  // the median of the three
            // Descending: [lo, lt) > p, [lt, i) == p, (gt, hi] < p.
            var lt = lo, i = lo, gt = hi
            while i <= gt {
                let x = v[i]
                if x > p {
                    v.swapAt(lt, i)
                    lt += 1
                    i += 1
                } else if x < p {
                    v.swapAt(i, gt)
                    gt -= 1
                } else {
                    i += 1
                }
            }
            if target < lt { hi = lt - 1 } else if target > gt { lo = gt + 1 } else { return p }
        }
        return v[target]
    }
}
