import Foundation
import ViTMergeCore
import ViTMergeIO
import ViTMergeModel

extension Trainer {
    // MARK: Resumable state

    /// Writes parameters, AdamW moments, step and settings to `path` atomically (with the
    /// objective's auxiliary parameters and their moments, and its `state` tensors, when it has any).
    public func saveState(to path: String, metadata: [String: String] = [:]) throws {
        var meta = metadata
        meta["format"] = "vitmerge-train-state"
        meta["config"] = model.config.json
        meta["step"] = "\(optimizer.step)"
        meta["mode"] = mode.rawValue
        meta["settings"] = settings.json
        var w = SafeTensorsWriter(metadata: meta)
        let p = trained
        for r in p.table.layout.regions {
            try w.add(
                r.name, floats: UnsafeBufferPointer(start: p.base + r.offset, count: r.shape.count), shape: r.shape.dims
            )
        }
        if let aux = objective.auxiliary {
            for r in aux.layout.regions {
                try w.add(
                    r.name, floats: UnsafeBufferPointer(start: aux.parameters.base + r.offset, count: r.shape.count),
                    shape: r.shape.dims)
            }
            let (m, v) = (aux.optimizer.m, aux.optimizer.v)
            try w.add(
                "optimizer.auxiliary.m", floats: UnsafeBufferPointer(start: m.base, count: m.count), shape: [m.count])
            try w.add(
                "optimizer.auxiliary.v", floats: UnsafeBufferPointer(start: v.base, count: v.count), shape: [v.count])
        }
        if let state = objective.state {
            for r in state.layout.regions {
                try w.add(
                    r.name, floats: UnsafeBufferPointer(start: state.base + r.offset, count: r.shape.count),
                    shape: r.shape.dims)
            }
        }
        try w.add(
            "optimizer.m", floats: UnsafeBufferPointer(start: optimizer.m.base, count: optimizer.m.count),
            shape: [optimizer.m.count])
        try w.add(
            "optimizer.v", floats: UnsafeBufferPointer(start: optimizer.v.base, count: optimizer.v.count),
            shape: [optimizer.v.count])
        try w.write(to: path)
    }

    /// Restores a state written by `saveState` for the same config, mode and settings.
    public func restoreState(from path: String) throws {
        let file = try SafeTensorsFile.read(path: path)
        guard file.metadata["format"] == "vitmerge-train-state", let stepText = file.metadata["step"],
            let step = Int(stepText)
        else {
            throw IOError.invalidFile(
                path: path, reason: "not a training state (format vitmerge-train-state)",
                hint: "resume from the file the same command wrote with --state")
        }
        if file.metadata["config"] != model.config.json || file.metadata["mode"] != mode.rawValue
            || file.metadata["settings"] != settings.json
        {
            throw IOError.invalidFile(
                path: path, reason: "it was written by a run with another config, mode or settings",
                hint: "resume with exactly the same command line, or delete the state file to start over")
        }
        let p = trained
        for r in p.table.layout.regions { try file.copyFloats(r.name, into: p.base + r.offset, shape: r.shape.dims) }
        let m = try file.floats("optimizer.m", shape: [optimizer.m.count]),
            v = try file.floats("optimizer.v", shape: [optimizer.v.count])
        m.withUnsafeBufferPointer { mp in
            v.withUnsafeBufferPointer { vp in optimizer.restore(step: step, m: mp.baseAddress!, v: vp.baseAddress!) }
        }
        if let aux = objective.auxiliary {
            for r in aux.layout.regions {
                try file.copyFloats(r.name, into: aux.parameters.base + r.offset, shape: r.shape.dims)
            }
            let count = aux.optimizer.m.count
            let am = try file.floats("optimizer.auxiliary.m", shape: [count]),
                av = try file.floats("optimizer.auxiliary.v", shape: [count])
            am.withUnsafeBufferPointer { mp in
                av.withUnsafeBufferPointer { vp in
                    aux.optimizer.restore(step: step, m: mp.baseAddress!, v: vp.baseAddress!)
                }
            }
        }
        if let state = objective.state {
            for r in state.layout.regions {
                try file.copyFloats(r.name, into: state.base + r.offset, shape: r.shape.dims)
            }
        }
    }
}
