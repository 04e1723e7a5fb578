import Foundation
import Synchronization

/// Ctrl-C for long loops: after `install()`, SIGINT only sets a flag; training loops check it
/// between steps, save their state and stop with an error that says how to resume. A second
/// Ctrl-C before the loop notices exits at once.
public enum Interrupt {
    static let flag = Atomic<Int>(0)

    /// Routes SIGINT to the flag (the default action returns on a second signal).
    public static func install() {
        signal(SIGINT) { _ in
            if Interrupt.flag.add(1, ordering: .relaxed).newValue > 1 { _exit(130) }
        }
    }

    /// Whether a stop was requested (by SIGINT or `request()`).
    public static var requested: Bool { flag.load(ordering: .relaxed) > 0 }

    /// Requests a stop as Ctrl-C would (tests, embedding applications).
    public static func request() { flag.store(1, ordering: .relaxed) }

    /// Clears a handled request.
    public static func clear() { flag.store(0, ordering: .relaxed) }
}
