import Foundation
import XCTest
@testable import ViTMergeModel

final class ViTConfigTests: XCTestCase {
    func testParsesTimmNamesIncludingNonSquareImages() throws {
        let json =
            #"{"img_size": [24, 32], "patch_size": 8, "in_chans": 3, "num_classes": 6, "embed_dim": 30, "depth": 2, "#
            + #""num_heads": 3, "mlp_ratio": 4.0, "qkv_bias": true, "class_token": true, "global_pool": "token", "#
            + #""fc_norm": false, "pre_norm": false, "act_layer": "gelu", "norm_eps": 1e-06}"#
        let c = try ViTConfig.parse(json: Data(json.utf8))
        XCTAssertEqual(c.imageHeight, 24); XCTAssertEqual(c.imageWidth, 32)
        XCTAssertEqual(c.numPatches, 12); XCTAssertEqual(c.tokens, 13); XCTAssertEqual(c.headDim, 10)
        XCTAssertEqual(try ViTConfig.parse(json: Data(c.json.utf8)), c)
    }

    func testRejectsUnknownKeysAndBadValues() {
        XCTAssertThrowsError(
            try ViTConfig.parse(
                json: Data(
                    #"{"img_size": 28, "patch_size": 4, "embed_dim": 8, "depth": 1, "num_heads": 2, "dropout": 0.1}"#
                        .utf8))
        ) {
            XCTAssertTrue("\($0)".contains("dropout"))
        }
        XCTAssertThrowsError(
            try ViTConfig.parse(
                json: Data(#"{"img_size": 30, "patch_size": 4, "embed_dim": 8, "depth": 1, "num_heads": 2}"#.utf8))
        ) {
            XCTAssertTrue("\($0)".contains("multiple of patch_size"))
        }
        XCTAssertThrowsError(
            try ViTConfig.parse(
                json: Data(#"{"img_size": 28, "patch_size": 4, "embed_dim": 10, "depth": 1, "num_heads": 3}"#.utf8)))
    }

    func testHiddenDimTruncatesLikeTimm() {
        var c = ViTConfig.mini28()
        c.embedDim = 30; c.mlpRatio = 2.66  // 79.8 → 79, as int() in Python
        XCTAssertEqual(c.hiddenDim, 79)
        c.mlpRatio = 3.3  // 30·3.3 rounds to exactly 99.0 in Double, as in Python
        XCTAssertEqual(c.hiddenDim, 99)
    }
}
