// swift-tools-version: 6.1
import PackageDescription
import Foundation

// Code generation for the host CPU unless VITMERGE_TARGET_CPU names another (e.g. haswell, skylake-avx512).
let targetCPU = ProcessInfo.processInfo.environment["VITMERGE_TARGET_CPU"] ?? "native"
let simdSettings: [SwiftSetting] = [
    .unsafeFlags(["-target-cpu", targetCPU, "-Xcc", "-fno-math-errno"]),
    .unsafeFlags(["-Ounchecked", "-wmo"], .when(configuration: .release)),
]

let package = Package(
    name: "ViTMerge",
    products: [
        .library(
            name: "ViTMerge",
            targets: [
                "ViTMergeCore", "ViTMergeKernels", "ViTMergeModel", "ViTMergeIO", "ViTMergeTraining", "ViTMergeMerging",
                "ViTMergeReport", "ViTMergeExperiment",
            ]),
        .executable(name: "vitmerge", targets: ["vitmerge"]),
        .executable(name: "vitmerge-bench", targets: ["ViTMergeBench"]),
        .executable(name: "vitmerge-fuzz", targets: ["vitmerge-fuzz"]),
    ],
    // `swift build --traits MPI` adds data-parallel training over MPI (needs libopenmpi-dev);
    // the default build needs no MPI.
    traits: [
        .trait(
            name: "MPI",
            description: "Data-parallel training with MPI (Open MPI: apt-get install libopenmpi-dev openmpi-bin)")
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-crypto", from: "3.12.3"),
        // Merge recipes (merge --recipe FILE.yaml): libyaml through Yams.
        .package(url: "https://github.com/jpsim/Yams", from: "6.2.2"),
    ],
    targets: [
        .systemLibrary(
            name: "CSleef", path: "Sources/CSleef", pkgConfig: "sleef",
            providers: [.apt(["libsleef-dev"])]),
        // The thread pool hands the caller's closure to its workers through CClosure (no heap box).
        .target(name: "CClosure", path: "Sources/CClosure", cSettings: [.unsafeFlags(["-O2"])]),
        .target(name: "ViTMergeCore", dependencies: ["CSleef", "CClosure"], swiftSettings: simdSettings),
        .target(name: "ViTMergeKernels", dependencies: ["ViTMergeCore", "CSleef"], swiftSettings: simdSettings),
        .target(name: "ViTMergeModel", dependencies: ["ViTMergeCore", "ViTMergeKernels"], swiftSettings: simdSettings),
        .target(
            name: "ViTMergeIO",
            dependencies: [
                "ViTMergeCore", "ViTMergeKernels", "ViTMergeModel", "CZlib", "CImage",
                .product(name: "Crypto", package: "swift-crypto"),
            ],
            swiftSettings: simdSettings),
        .target(
            name: "ViTMergeTraining", dependencies: ["ViTMergeCore", "ViTMergeKernels", "ViTMergeModel", "ViTMergeIO"],
            swiftSettings: simdSettings),
        .target(
            name: "ViTMergeMerging",
            dependencies: [
                "ViTMergeCore", "ViTMergeKernels", "ViTMergeModel", "ViTMergeIO", "ViTMergeTraining",
                .product(name: "Yams", package: "Yams"),
            ],
            swiftSettings: simdSettings),
        .target(name: "ViTMergeReport", dependencies: [], swiftSettings: simdSettings),
        .target(
            name: "ViTMergeExperiment",
            dependencies: [
                "ViTMergeCore", "ViTMergeKernels", "ViTMergeModel", "ViTMergeIO", "ViTMergeTraining", "ViTMergeMerging",
                "ViTMergeReport",
            ],
            swiftSettings: simdSettings),
        // Image decoding (ImageFolder): libjpeg-turbo and libpng through a small C target, since
        // both report errors by longjmp.
        .systemLibrary(
            name: "CJPEG", path: "Sources/CJPEG", pkgConfig: "libjpeg", providers: [.apt(["libjpeg62-turbo-dev"])]),
        .systemLibrary(name: "CPNG", path: "Sources/CPNG", pkgConfig: "libpng", providers: [.apt(["libpng-dev"])]),
        .target(
            name: "CImage", dependencies: ["CJPEG", "CPNG"], path: "Sources/CImage",
            cSettings: [.unsafeFlags(["-O2"])]),
        .systemLibrary(name: "CZlib", path: "Sources/CZlib", providers: [.apt(["zlib1g-dev"])]),
        .systemLibrary(name: "CMPI", path: "Sources/CMPI", pkgConfig: "mpi-c", providers: [.apt(["libopenmpi-dev"])]),
        .target(
            name: "ViTMergeMPI",
            dependencies: ["ViTMergeCore", .target(name: "CMPI", condition: .when(traits: ["MPI"]))],
            swiftSettings: simdSettings),
        .executableTarget(
            name: "vitmerge",
            dependencies: [
                "ViTMergeCore", "ViTMergeKernels", "ViTMergeModel", "ViTMergeIO", "ViTMergeTraining", "ViTMergeMerging",
                "ViTMergeReport", "ViTMergeExperiment",
                .target(name: "ViTMergeMPI", condition: .when(traits: ["MPI"])),
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ],
            swiftSettings: simdSettings),
        .executableTarget(
            name: "ViTMergeBench",
            dependencies: [
                "ViTMergeCore", "ViTMergeKernels", "ViTMergeModel", "ViTMergeIO", "ViTMergeTraining",
                "ViTMergeMerging", "CSleef", "CMallocCounter",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ],
            path: "Benchmarks/ViTMergeBench", swiftSettings: simdSettings),
        .target(name: "CMallocCounter", path: "Benchmarks/CMallocCounter"),
        .executableTarget(
            name: "vitmerge-fuzz", dependencies: ["ViTMergeCore", "ViTMergeIO", "ViTMergeModel", "ViTMergeMerging"],
            swiftSettings: simdSettings),
        .testTarget(
            name: "ViTMergeCoreTests", dependencies: ["ViTMergeCore"], swiftSettings: simdSettings),
        .testTarget(
            name: "ViTMergeKernelsTests", dependencies: ["ViTMergeKernels", "ViTMergeCore"],
            swiftSettings: simdSettings),
        .testTarget(
            name: "ViTMergeModelTests",
            dependencies: ["ViTMergeModel", "ViTMergeIO", "ViTMergeKernels", "ViTMergeCore"],
            swiftSettings: simdSettings),
        .testTarget(
            name: "ViTMergeTrainingTests",
            dependencies: [
                "ViTMergeTraining", "ViTMergeModel", "ViTMergeIO", "ViTMergeKernels", "ViTMergeCore", "CMallocCounter",
            ],
            swiftSettings: simdSettings),
        .testTarget(
            name: "ViTMergeMergingTests",
            dependencies: [
                "ViTMergeMerging", "ViTMergeModel", "ViTMergeIO", "ViTMergeCore", "ViTMergeTraining", "CMallocCounter",
            ],
            swiftSettings: simdSettings),
        .testTarget(name: "ViTMergeReportTests", dependencies: ["ViTMergeReport"], swiftSettings: simdSettings),
        .testTarget(
            name: "ViTMergeExperimentTests", dependencies: ["ViTMergeExperiment", "ViTMergeReport"],
            swiftSettings: simdSettings),
        .testTarget(
            name: "ViTMergeIOTests", dependencies: ["ViTMergeIO", "ViTMergeModel", "ViTMergeCore"],
            swiftSettings: simdSettings),
        // End-to-end tests of the `vitmerge` binary; depending on the executable makes `swift test` build it.
        .testTarget(
            name: "ViTMergeCLITests", dependencies: ["vitmerge", "ViTMergeIO", "ViTMergeModel", "ViTMergeCore"],
            swiftSettings: simdSettings),
    ]
)
