import Any4Core
import Any4Inference

/// What `ANY4_TUI_TRACE=FILE` records (written when the UI leaves), one fact a line, times in
/// milliseconds since launch:
///
/// - `first_frame_ms T`
/// - `key_to_frame_ms D` per key: from the key read to the next frame drawn
/// - `job_start_ms T <label>`, `progress_ms T <done>/<total> <label>` at each frame whose job
///   progress or label changed, `job_end_ms T max_gap_ms G <label>` (G: the longest time the
///   job's progress or label stood still on screen)
/// - `model_reference_ms T <figures>` when the unquantized reference is ready, `model_error_ms T after_job_ms D <what>` when new model-level figures are on screen (D: since
///   the last job ended)
/// - at the end: `key_to_frame_count N`, `key_to_frame_p50_ms`, `key_to_frame_p99_ms`,
///   `key_to_frame_max_ms`, and `progress_max_gap_ms` over all jobs
struct TraceRecorder {
    let launchedAt: Double
    private(set) var lines: [String] = []
    private var keyLatencies: [Double] = []
    private var jobRunning = false
    private var lastProgress = ""
    private var lastProgressAt = 0.0
    private var jobGap = 0.0
    private var maxGap = 0.0
    private var jobEndedAt: Double?
    private var lastFigures = ""
    private var referenceSeen = false

    init(launchedAt: Double) { self.launchedAt = launchedAt }

    func ms(_ t: Double) -> String { Formatting.fixed((t - launchedAt) * 1000, 1) }

    mutating func firstFrame(at now: Double) { lines.append("first_frame_ms \(Formatting.fixed((now - launchedAt) * 1000, 2))") }

    mutating func keyToFrame(_ seconds: Double) {
        keyLatencies.append(seconds * 1000)
        lines.append("key_to_frame_ms \(Formatting.fixed(seconds * 1000, 3))")
    }

    /// After each frame: the job's progress and the model-level figures as drawn.
    mutating func frame(at now: Double, jobs: JobCenter) {
        if let job = jobs.job {
            let label = job.progress.label.isEmpty ? job.label : job.progress.label
            let progress = "\(job.progress.completed)/\(job.progress.total) \(label)"
            if !job.done && !jobRunning {
                jobRunning = true
                jobGap = 0
                lastProgress = progress
                lastProgressAt = now
                lines.append("job_start_ms \(ms(now)) \(job.label)")
            } else if jobRunning && progress != lastProgress {
                jobGap = max(jobGap, now - lastProgressAt)
                lastProgress = progress
                lastProgressAt = now
                lines.append("progress_ms \(ms(now)) \(progress)")
            }
            if job.done && jobRunning {
                jobRunning = false
                jobGap = max(jobGap, now - lastProgressAt)
                maxGap = max(maxGap, jobGap)
                jobEndedAt = now
                lines.append("job_end_ms \(ms(now)) max_gap_ms \(Formatting.fixed(jobGap * 1000, 1)) \(job.label)")
            }
        }
        if let snap = jobs.evaluator?.snapshot() {
            if let reference = snap.reference, !referenceSeen {
                referenceSeen = true
                lines.append(
                    "model_reference_ms \(ms(now)) \(Renderer.figures(reference)) on \(snap.source) (pass \(Formatting.fixed(reference.seconds, 2)) s)"
                )
            }
            let figures =
                (snap.model.map { "model of \($0.layers) layers \(Renderer.figures($0.figures))" } ?? "")
                + snap.layers.keys.sorted().joined(separator: ",")
            if figures != lastFigures, !figures.isEmpty {
                let after = jobEndedAt.map { Formatting.fixed((now - $0) * 1000, 1) } ?? "-"
                lines.append(
                    "model_error_ms \(ms(now)) after_job_ms \(after) \(snap.model.map { "\($0.layers) layers: \(Renderer.figures($0.figures)) (pass \(Formatting.fixed($0.figures.seconds, 2)) s)" } ?? "")"
                )
            }
            lastFigures = figures
        }
    }

    /// The lines with the summary at the end.
    var text: String {
        var out = lines
        let sorted = keyLatencies.sorted()
        out.append("key_to_frame_count \(sorted.count)")
        if !sorted.isEmpty {
            func q(_ p: Double) -> Double { Divergence.quantile(sorted, p) }
            out.append("key_to_frame_p50_ms \(Formatting.fixed(q(0.5), 3))")
            out.append("key_to_frame_p99_ms \(Formatting.fixed(q(0.99), 3))")
            out.append("key_to_frame_max_ms \(Formatting.fixed(sorted.last!, 3))")
        }
        out.append("progress_max_gap_ms \(Formatting.fixed(maxGap * 1000, 1))")
        return out.joined(separator: "\n") + "\n"
    }
}
