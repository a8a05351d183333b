extension Array where Element: Comparable {
    /// In an array sorted ascending: the index of `value`, or where it would go. Appending a new largest value
    /// (how ledger ids and entry ids mostly arrive) is answered without a search.
    func sortedSlot(of value: Element) -> Int {
        if let last, last < value { return count }
        var (low, high) = (0, count)
        while low < high {
            let middle = (low + high) / 2
            if self[middle] < value { low = middle + 1 } else { high = middle }
        }
        return low
    }
}
