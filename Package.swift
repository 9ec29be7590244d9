// swift-tools-version:6.0
import PackageDescription

let package = Package(
    name: "any4-explorer",
    platforms: [.macOS(.v15)],
    products: [
        .executable(name: "any4", targets: ["any4"]),
        .library(name: "Any4", targets: ["Any4"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
    ],
    targets: [
        // MARK: - Core
        // The core library: file formats, model view, quantization. No terminal, no CLI parsing.
        // Optimised even in debug builds: the tests run its numerics on real model weights.
        .target(name: "Any4", dependencies: ["CAny4Kernels"], swiftSettings: [.unsafeFlags(["-O"])]),

        // Lookup-GEMM and dense kernels in C with AVX2 intrinsics (run-time dispatch, scalar
        // fallback). Optimised in every build configuration.
        .target(name: "CAny4Kernels", cSettings: [.unsafeFlags(["-O3"])]),

        // MARK: - Terminal
        // ncursesw through a module map that links it by name. (pkg-config's ncursesw.pc adds
        // -D_XOPEN_SOURCE=600, which SwiftPM refuses with a warning; the shim sets what it needs.)
        .systemLibrary(
            name: "CNcurses",
            providers: [.apt(["libncurses-dev"])]
        ),
        .target(name: "Any4TUI", dependencies: ["Any4", "CNcurses"]),

        // MARK: - Executable
        .executableTarget(
            name: "any4",
            dependencies: [
                "Any4", "Any4TUI",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ]
        ),

        // MARK: - Tests
        .target(name: "TestSupport", dependencies: ["Any4"], path: "Tests/TestSupport"),
        .testTarget(name: "Any4Tests", dependencies: ["Any4", "TestSupport"]),
        .testTarget(name: "Any4TUITests", dependencies: ["Any4TUI", "TestSupport"]),
        .testTarget(name: "CLITests", dependencies: ["TestSupport"]),
    ],
    swiftLanguageModes: [.v6]
)
