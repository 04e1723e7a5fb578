import Foundation
import XCTest
@_spi(Testing) @testable import ViTMergeIO

/// The safetensors header parser (SafeTensors+Header.swift) decides as JSONSerialization did: same
/// value where it accepts, refusal only where Foundation refuses, and Foundation's answer elsewhere.
final class SafeTensorsHeaderTests: XCTestCase {
    static let cases = [
        #"{"a":1}"#, #"{"a":true}"#, #"{"a":false}"#, #"{"a":1.0}"#, #"{"a":-0}"#, #"{"a":1e2}"#, #"{"a":1E2}"#,
        #"{"a":1,"a":2}"#, "{\"a\":\"x\u{1}y\"}", #"{"a":"\ud800"}"#, #"{"a":"\u0000"}"#,
        #"{"a":[true,false,1.5,null,"s",99999999999999999999]}"#, #"{"a":01}"#, #"{"a":1,}"#, #"{"a":[1,]}"#,
        #"{"a":1} x"#, #"{"a":1}   "#, "\u{FEFF}{\"a\":1}", "{\"\u{FEFF}a\":1}", #"{"a":"\/\"\\\b\f\n\r\t"}"#,
        #"{"a":9223372036854775807}"#, #"{"a":9223372036854775808}"#, #"{"a":-9223372036854775808}"#,
        #"{"a":-9223372036854775809}"#, #"{"a":"\x"}"#, "{\"a\":1}\u{0}", "{\"a\":\"\u{7f}\"}",
        #"{"a" :1 , "b":[ ]}"#, #"{"a":-}"#, #"{"a":1.}"#, #"{"a":.5}"#, #"{"a":+1}"#, #"{"a":"\u00e9"}"#, " {}", "{}",
        "[]", "1", "\"s\"", "{\"a\":tru}", "{\"a\":nul}", "{'a':1}", "{\"a\":1}}", "{,}", "{\"a\"}", "{\"a\":}",
        "\u{c}{}", "\u{b}{}", "{\"a\":{\"b\":{\"c\":[[[]]]}}}", "{\"a\":1", "{\"a", "{\"a\":\"b",
        String(repeating: "[", count: 100),
        "{\"a\":" + String(repeating: "[", count: 100) + String(repeating: "]", count: 100) + "}",
        #"{"t": {"dtype": "F32", "shape": [2, 3], "data_offsets": [0, 24]}, "__metadata__": {"k": "v"}}"#,
    ]

    func testAgreesWithFoundationOnEdgeCases() {
        for c in Self.cases {
            XCTAssertTrue(SafeTensorsFile.headerParserAgreesWithFoundation(ArraySlice(c.utf8)), c.debugDescription)
        }
    }

    func testDecidesPlainHeadersAndLeavesFoundationsQuirksToIt() {
        func outcome(_ s: String) -> HeaderParser.Outcome { HeaderParser.parse(ArraySlice(s.utf8)) }
        XCTAssertEqual(
            outcome(#"{"t": {"dtype": "F32", "shape": [2, -3], "data_offsets": [0, 24]}, "m": null}"#),
            .value(
                .object([
                    "t": .object([
                        "dtype": .string("F32"), "shape": .array([.number(2), .number(-3)]),
                        "data_offsets": .array([.number(0), .number(24)]),
                    ]),
                    "m": .null,
                ])))
        XCTAssertEqual(outcome(#"{"a":1,"a":2}"#), .value(.object(["a": .number(2)])), "the last duplicate wins")
        XCTAssertEqual(outcome(#"{"a":true}"#), .value(.object(["a": .number(1)])), "true as? Int is 1")
        XCTAssertEqual(outcome(#"{"a":"\"\n"}"#), .value(.object(["a": .string("\"\n")])))
        // Foundation accepts trailing commas and reads BOMs, \u escapes and fractions its own way.
        for s in [#"{"a":1,}"#, #"{"a":[1,]}"#, "\u{FEFF}{}", #"{"a":"\u00e9"}"#, #"{"a":1.0}"#, "[]", "1"] {
            XCTAssertEqual(outcome(s), .undecided, s)
        }
        for s in ["{\"a\":1} x", "{,}", "{\"a\"}", "{\"a\":}", "{\"a\":1", "{'a':1}", "{\"a\":tru}"] {
            XCTAssertEqual(outcome(s), .invalid, s)
        }
    }

    func testTrailingCommaHeaderStillReadsAsBefore() throws {
        let header = #"{"t": {"dtype": "U8", "shape": [2], "data_offsets": [0, 2]},}"#
        var b = withUnsafeBytes(of: UInt64(header.utf8.count).littleEndian) { [UInt8]($0) }
        b += Array(header.utf8) + [7, 9]
        XCTAssertEqual(try SafeTensorsFile(bytes: b, path: "t").bytes("t"), [7, 9])
    }

    /// Every committed seed and regression input of the safetensors-based fuzz targets: the parsers
    /// agree, and the seeds (well-formed files) take the fast path.
    func testAgreesOnCommittedFuzzInputs() throws {
        let fm = FileManager.default
        var decided = 0
        for sub in ["corpus", "regressions"] {
            for t in ["safetensors", "checkpoint", "task", "golden"] {
                let dir = FuzzRegressionTests.fuzzDirectory.appendingPathComponent("\(sub)/\(t)")
                for name in (try? fm.contentsOfDirectory(atPath: dir.path)) ?? [] {
                    let b = [UInt8](try Data(contentsOf: dir.appendingPathComponent(name)))
                    guard b.count >= 8 else { continue }
                    let n = b[0..<8].reversed().reduce(0) { $0 << 8 | Int($1) }
                    guard n >= 2, n <= b.count - 8 else { continue }
                    let header = b[8..<(8 + n)]
                    XCTAssertTrue(SafeTensorsFile.headerParserAgreesWithFoundation(header), "\(sub)/\(t)/\(name)")
                    if sub == "corpus", case .value = HeaderParser.parse(header) { decided += 1 }
                }
            }
        }
        XCTAssertGreaterThanOrEqual(decided, 4, "the seeds should take the fast path")
    }
}
