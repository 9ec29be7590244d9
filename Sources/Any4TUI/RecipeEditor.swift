import Any4Core

/// A bit-budget recipe (`any4 plan`) open in the Model tab: the user changes a layer's candidate,
/// moves the budget and re-solves, and saves the result. Plain values, no terminal: the reducer
/// calls it, and so do the tests.
public struct RecipeEditor: Sendable, Equatable {
    public var recipe: Recipe
    /// The file it was loaded from (where `S` saves it).
    public var path: String
    /// The budget `r` re-solves at, in stored bits per weight of the planned layers.
    public var budget: Double
    /// Changed since it was loaded or saved.
    public var edited = false
    /// The budget step of `+` and `-`.
    public static let budgetStep = 0.05

    public init(recipe: Recipe, path: String) {
        self.recipe = recipe
        self.path = path
        budget = recipe.budgetBitsPerWeight ?? Self.rounded(recipe.bitsPerWeight)
    }

    static func rounded(_ bits: Double) -> Double { (bits / budgetStep).rounded() * budgetStep }

    public var table: SensitivityTable { recipe.table }

    /// The recipe's row of the weight `name`, nil when the recipe does not plan it.
    public func layer(named name: String) -> Int? { recipe.table.layers.firstIndex(of: name) }

    /// The chosen candidate's entry for layer `l`.
    public func entry(_ l: Int) -> SensitivityTable.Entry { recipe.table.entries[l][recipe.choice[l]]! }

    /// Stored bits per weight of layer `l` in its chosen candidate.
    public func bitsPerWeight(_ l: Int) -> Double { Double(entry(l).bits) / Double(max(recipe.table.parameters[l], 1)) }

    /// Moves layer `l` to the next (`step` 1) or previous (−1) candidate that applies to it, in
    /// the order of the recipe's candidates, wrapping around; false when it has no other.
    @discardableResult
    public mutating func cycle(layer l: Int, by step: Int) -> Bool {
        let count = recipe.table.candidates.count
        var c = recipe.choice[l]
        for _ in 0..<count {
            c = ((c + step) % count + count) % count
            if c == recipe.choice[l] { return false }
            if recipe.table.entries[l][c] != nil {
                recipe.choice[l] = c
                edited = true
                return true
            }
        }
        return false
    }

    /// Moves the budget by `delta` bits per weight, kept inside what the candidates can reach.
    public mutating func adjustBudget(by delta: Double) {
        var b = Self.rounded(budget + delta)
        if let range = recipe.table.bitsPerWeightRange {
            b = min(max(b, Self.rounded(range.lowerBound) - Self.budgetStep), Self.rounded(range.upperBound) + Self.budgetStep)
        }
        budget = max(b, 0)
    }

    /// Re-solves the whole choice at ``budget`` (``BitAllocation/solve(_:budgetBits:)``, the
    /// optimal mix); nil on success, else why not (no mix fits the budget).
    public mutating func solve() -> String? {
        let bits = recipe.table.budgetBits(bitsPerWeight: budget)
        guard let choice = BitAllocation.solve(recipe.table, budgetBits: bits) else {
            let least = recipe.table.bitsPerWeightRange.map { " (least \(Formatting.fixed($0.lowerBound, 3)))" } ?? ""
            return "no mix fits \(Formatting.fixed(budget, 2)) bits/weight\(least)"
        }
        if choice != recipe.choice { edited = true }
        recipe.choice = choice
        recipe.budgetBitsPerWeight = budget
        return nil
    }

    /// Writes the recipe to `path` (temporary file, then rename) and makes it the current file.
    public mutating func save(to path: String? = nil) throws {
        let target = path ?? self.path
        try recipe.write(to: target)
        self.path = target
        edited = false
    }
}
