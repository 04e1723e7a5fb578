import ViTMergeCore
import ViTMergeKernels
import ViTMergeModel

extension MergeRecipe {
    /// For each encoder region of `layout` (by index), the entry of `entries` that applies: the first whose
    /// filter is a substring of the region's name, else the entry without filter. A filter that matches no
    /// region is refused (a typo would otherwise change nothing).
    public static func assign(
        _ entries: [Filtered], regions: [(name: String, offset: Int, shape: Shape)], key: String
    ) throws -> [Int] {
        guard let fallback = entries.firstIndex(where: { $0.filter == nil }) else {
            throw MergeError.incompatible("parameters.\(key): an entry without filter is needed for the other tensors")
        }
        var used = Set<Int>()
        let assigned = regions.map { r in
            let i = entries.firstIndex { $0.filter.map { r.name.contains($0) } ?? false } ?? fallback
            used.insert(i)
            return i
        }
        for (i, e) in entries.enumerated() where e.filter != nil && !used.contains(i) {
            let example = regions.first { $0.name.hasPrefix("blocks.") }?.name ?? regions.first?.name ?? ""
            throw MergeError.incompatible(
                "parameters.\(key): filter '\(e.filter!)' matches no encoder tensor, or only ones an earlier filter "
                    + "took (names look like \(example))")
        }
        return assigned
    }

    /// Checks the recipe's tensor filters against an encoder's regions (before any data is loaded).
    public func checkFilters(table: ParameterTable) throws {
        let regions = EncoderVector.encoderLayout(table).regions
        for (key, value) in parameters {
            if case .filtered(let entries) = value { _ = try MergeRecipe.assign(entries, regions: regions, key: key) }
        }
    }
}

extension MergeEvaluator {
    /// Applies the recipe's fixed method options (breadcrumbs' outliers, AdaMerging's steps, lr, batch, seed).
    public func configure(recipe r: MergeRecipe) {
        func fixed(_ k: String) -> Double? { if case .fixed(let v)? = r.parameters[k] { v } else { nil } }
        if let v = fixed("outliers") { breadcrumbsOutliers = v }
        if let v = fixed("ada_steps") { adaMergingOptions.steps = Int(v) }
        if let v = fixed("ada_lr") { adaMergingOptions.learningRate = v }
        if let v = fixed("ada_batch") { adaMergingOptions.batch = Int(v) }
        adaMergingOptions.seed = r.seed
    }

    /// Merges by `recipe` (its models' weights already applied to the tasks' τ): the method's hyper-parameter
    /// and λ fixed, searched on validation over the recipe's list, or set per tensor filter. A per-filter
    /// hyper-parameter makes one merge per distinct value and takes each tensor from the merge of its value;
    /// a per-filter λ scales each tensor of the direction by its λ (then no λ search: the model is
    /// θ_pre + direction). Unset, both are searched as `merge(_:candidates:seed:grid:)` does.
    public func merge(recipe r: MergeRecipe) throws -> MergeSearchResult {
        let method = r.method
        guard method != .emr else {
            throw MergeError.incompatible("EMR keeps one model per task, not one direction: use emrMerge()")
        }
        configure(recipe: r)
        let regions = tasks[0].tau.arena.layout.regions
        var candidates: [Double?] = method.isTuned ? method.defaultCandidates.map(Optional.some) : [nil]
        var hyperFilters: (values: [Double], regionValue: [Int])? = nil
        switch method.recipeKey.flatMap({ r.parameters[$0] }) {
        case .fixed(let v)?: candidates = [v]
        case .search(let vs)?: candidates = vs
        case .filtered(let entries)?:
            let assigned = try MergeRecipe.assign(entries, regions: regions, key: method.recipeKey!)
            var values: [Double] = []
            for e in entries where !values.contains(e.value) { values.append(e.value) }
            hyperFilters = (values, assigned.map { values.firstIndex(of: entries[$0].value)! })
            candidates = [nil]
        case nil: break
        }
        var grid: [Double]? = nil
        var lambdaScale: [Float]? = nil
        switch r.parameters["lambda"] {
        case .fixed(let v)?: grid = [v]
        case .search(let vs)?: grid = vs
        case .filtered(let entries)?:
            lambdaScale = try MergeRecipe.assign(entries, regions: regions, key: "lambda").map {
                Float(entries[$0].value)
            }
            grid = [1]
        case nil: break
        }
        return try merge(method, candidates: candidates, grid: grid) { h in
            let dir: EncoderVector
            if let (values, regionValue) = hyperFilters {
                let merges = try values.map { try self.direction(method, hyperparameter: $0, seed: r.seed) }
                dir = EncoderVector(like: merges[0])
                for (i, region) in regions.enumerated() {
                    (dir.base + region.offset).update(
                        from: merges[regionValue[i]].base + region.offset,
                        count: region.shape.count)
                }
            } else {
                dir = try self.direction(method, hyperparameter: h, seed: r.seed)
            }
            if let lambdaScale {
                for (i, region) in regions.enumerated() {
                    Elementwise.scale(
                        dir.base + region.offset, alpha: lambdaScale[i], count: region.shape.count,
                        pool: self.pool)
                }
            }
            return dir
        }
    }
}
