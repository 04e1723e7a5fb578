import Foundation

/// A safetensors header's JSON, reduced to what `SafeTensorsFile` validates. Numbers keep only the
/// value `as? Int` gives for the `NSNumber` that Foundation's `JSONSerialization` makes of them
/// (nil when not integral; JSON true and false are 1 and 0), so a header reads the same whichever
/// parser produced the value.
enum HeaderJSON: Equatable, CustomStringConvertible {
    case object([String: HeaderJSON])
    case array([HeaderJSON])
    case string(String)
    case number(Int?)
    case null

    /// The header bytes parsed with the same acceptance as `JSONSerialization.jsonObject(with:)`:
    /// `HeaderParser` where it can decide alone (ASCII text, integers, no \u escapes), else
    /// `JSONSerialization` itself. nil for text that is not JSON.
    static func parse(_ bytes: ArraySlice<UInt8>) -> HeaderJSON? {
        switch HeaderParser.parse(bytes) {
        case .value(let v): return v
        case .invalid: return nil
        case .undecided:
            guard let any = try? JSONSerialization.jsonObject(with: Data(bytes)) else { return nil }
            return HeaderJSON(foundation: any)
        }
    }

    /// The value Foundation's JSON object `any` stands for (`as? Int` for numbers, as the readers cast).
    init(foundation any: Any) {
        if any is NSNumber {
            self = .number(any as? Int)
        } else if let s = any as? String {
            self = .string(s)
        } else if let a = any as? [Any] {
            self = .array(a.map(HeaderJSON.init(foundation:)))
        } else if let o = any as? [String: Any] {
            self = .object(o.mapValues(HeaderJSON.init(foundation:)))
        } else {
            self = .null
        }
    }

    var object: [String: HeaderJSON]? { if case .object(let o) = self { o } else { nil } }
    var array: [HeaderJSON]? { if case .array(let a) = self { a } else { nil } }
    var string: String? { if case .string(let s) = self { s } else { nil } }
    var int: Int? { if case .number(let n) = self { n } else { nil } }

    /// Short JSON-like text, for messages.
    var description: String {
        switch self {
        case .object(let o): "{" + o.keys.sorted().map { "\"\($0)\": \(o[$0]!)" }.joined(separator: ", ") + "}"
        case .array(let a): "[" + a.map(\.description).joined(separator: ", ") + "]"
        case .string(let s): "\"\(s)\""
        case .number(let n): n.map(String.init) ?? "(a non-integer number)"
        case .null: "null"
        }
    }
}

/// A small strict JSON parser for safetensors headers, which decides only where its answer is
/// certainly `JSONSerialization`'s: it returns `.undecided` for anything outside plain ASCII text
/// (a byte 0 or ≥ 0x80, which Foundation reads as another encoding or a byte-order mark), \u
/// escapes, raw control characters in strings, numbers with a fraction or exponent or out of `Int`'s
/// range, trailing commas (which Foundation accepts), a top level that is not an object, and nesting
/// deeper than `maxDepth`. It refuses (`.invalid`) only text that is not JSON for a structural
/// reason both parsers share (a missing ':', ',' or closing bracket, garbage after the value, …).
/// Duplicate keys keep the last value, as Foundation does.
struct HeaderParser {
    enum Outcome: Equatable {
        case value(HeaderJSON)
        case invalid
        case undecided
    }

    static let maxDepth = 64

    private enum Stop: Error {
        case invalid
        case undecided
    }

    private let p: UnsafeBufferPointer<UInt8>
    private var i = 0

    private init(_ p: UnsafeBufferPointer<UInt8>) { self.p = p }

    static func parse(_ bytes: ArraySlice<UInt8>) -> Outcome {
        bytes.withUnsafeBufferPointer { buf in
            var parser = HeaderParser(buf)
            do {
                // Foundation guesses the encoding from NUL bytes and byte-order marks: leave those to it.
                if buf.contains(where: { $0 == 0 || $0 >= 0x80 }) { return .undecided }
                parser.skipSpace()
                guard parser.peek == UInt8(ascii: "{") else { return .undecided }
                let v = try parser.value(depth: 0)
                parser.skipSpace()
                return parser.i == buf.count ? .value(v) : .invalid
            } catch Stop.invalid { return .invalid } catch { return .undecided }
        }
    }

    private var peek: UInt8? { i < p.count ? p[i] : nil }

    private mutating func skipSpace() {
        while i < p.count, p[i] == 0x20 || p[i] == 0x0A || p[i] == 0x0D || p[i] == 0x09 { i &+= 1 }
    }

    private mutating func expect(_ c: UInt8) throws(Stop) {
        skipSpace()
        guard peek == c else { throw .invalid }
        i &+= 1
    }

    private mutating func literal(_ word: StaticString) throws(Stop) {
        let n = word.utf8CodeUnitCount
        guard p.count - i >= n else { throw .invalid }
        for k in 0..<n where p[i &+ k] != word.utf8Start[k] { throw .invalid }
        i &+= n
    }

    private mutating func value(depth: Int) throws(Stop) -> HeaderJSON {
        guard depth < Self.maxDepth else { throw .undecided }
        skipSpace()
        guard let c = peek else { throw .invalid }
        switch c {
        case UInt8(ascii: "{"):
            i &+= 1
            var o: [String: HeaderJSON] = [:]
            skipSpace()
            if peek == UInt8(ascii: "}") { i &+= 1; return .object(o) }
            while true {
                skipSpace()
                guard peek == UInt8(ascii: "\"") else { throw peek == UInt8(ascii: "}") ? .undecided : .invalid }
                let key = try string()
                try expect(UInt8(ascii: ":"))
                o[key] = try value(depth: depth &+ 1)
                skipSpace()
                guard let d = peek else { throw .invalid }
                i &+= 1
                if d == UInt8(ascii: "}") { return .object(o) }
                guard d == UInt8(ascii: ",") else { throw .invalid }
            }
        case UInt8(ascii: "["):
            i &+= 1
            var a: [HeaderJSON] = []
            skipSpace()
            if peek == UInt8(ascii: "]") { i &+= 1; return .array(a) }
            while true {
                skipSpace()
                if peek == UInt8(ascii: "]") { throw .undecided }  // a trailing comma
                a.append(try value(depth: depth &+ 1))
                skipSpace()
                guard let d = peek else { throw .invalid }
                i &+= 1
                if d == UInt8(ascii: "]") { return .array(a) }
                guard d == UInt8(ascii: ",") else { throw .invalid }
            }
        case UInt8(ascii: "\""): return .string(try string())
        case UInt8(ascii: "t"): try literal("true"); return .number(1)
        case UInt8(ascii: "f"): try literal("false"); return .number(0)
        case UInt8(ascii: "n"): try literal("null"); return .null
        case UInt8(ascii: "-"), UInt8(ascii: "0")...UInt8(ascii: "9"): return .number(try integer())
        default: throw .invalid
        }
    }

    /// A string at `i` (on its opening quote): printable ASCII and the escapes \" \\ \/ \b \f \n \r \t.
    private mutating func string() throws(Stop) -> String {
        i &+= 1
        let start = i
        while i < p.count, p[i] != UInt8(ascii: "\""), p[i] != UInt8(ascii: "\\"), p[i] >= 0x20 { i &+= 1 }
        if peek == UInt8(ascii: "\"") {  // no escapes: the common case
            defer { i &+= 1 }
            return String(decoding: UnsafeBufferPointer(rebasing: p[start..<i]), as: UTF8.self)
        }
        var out = Array(p[start..<i])
        while true {
            guard let c = peek else { throw .invalid }
            i &+= 1
            switch c {
            case UInt8(ascii: "\""): return String(decoding: out, as: UTF8.self)
            case UInt8(ascii: "\\"):
                guard let e = peek else { throw .invalid }
                i &+= 1
                switch e {
                case UInt8(ascii: "\""), UInt8(ascii: "\\"), UInt8(ascii: "/"): out.append(e)
                case UInt8(ascii: "b"): out.append(0x08)
                case UInt8(ascii: "f"): out.append(0x0C)
                case UInt8(ascii: "n"): out.append(0x0A)
                case UInt8(ascii: "r"): out.append(0x0D)
                case UInt8(ascii: "t"): out.append(0x09)
                default: throw .undecided  // \u… and invalid escapes
                }
            case 0..<0x20: throw .undecided
            default: out.append(c)
            }
        }
    }

    /// An integer at `i`: -?(0|[1-9][0-9]*) fitting in `Int`, not followed by a fraction or exponent.
    private mutating func integer() throws(Stop) -> Int {
        let negative = peek == UInt8(ascii: "-")
        if negative { i &+= 1 }
        let start = i
        var v = 0
        while let c = peek, c >= UInt8(ascii: "0"), c <= UInt8(ascii: "9") {
            let (m, o1) = v.multipliedReportingOverflow(by: 10)
            let (s, o2) = m.subtractingReportingOverflow(Int(c &- UInt8(ascii: "0")))  // accumulate −|v|
            guard !o1, !o2 else { throw .undecided }
            v = s
            i &+= 1
        }
        let digits = i - start
        guard digits > 0, !(digits > 1 && p[start] == UInt8(ascii: "0")) else { throw .undecided }
        if let c = peek, c == UInt8(ascii: ".") || c == UInt8(ascii: "e") || c == UInt8(ascii: "E") {
            throw .undecided
        }
        if negative { return v }
        guard v != Int.min else { throw .undecided }
        return -v
    }
}

extension SafeTensorsFile {
    /// Whether `HeaderParser`'s decision on the header text `header` (accept with the same value,
    /// refuse, or leave it to Foundation) is `JSONSerialization`'s: the fuzzer's and tests' check
    /// that the fast path changes nothing.
    @_spi(Testing) public static func headerParserAgreesWithFoundation(_ header: ArraySlice<UInt8>) -> Bool {
        let foundation = (try? JSONSerialization.jsonObject(with: Data(header))).map(HeaderJSON.init(foundation:))
        switch HeaderParser.parse(header) {
        case .value(let v): return foundation == v
        case .invalid: return foundation == nil
        case .undecided: return true
        }
    }
}
