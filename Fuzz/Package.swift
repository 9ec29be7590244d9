// swift-tools-version:6.0
// libFuzzer targets for the Any4 file parsers. Build and run: see README.md.
import PackageDescription

let package = Package(
    name: "any4-fuzz",
    platforms: [.macOS(.v14)],
    dependencies: [
        .package(name: "any4-explorer", path: "..")
    ],
    targets: [
        .executableTarget(name: "FuzzSafeTensors", dependencies: [.product(name: "Any4", package: "any4-explorer")]),
        .executableTarget(name: "FuzzGGUF", dependencies: [.product(name: "Any4", package: "any4-explorer")]),
        .executableTarget(name: "FuzzJSON", dependencies: [.product(name: "Any4", package: "any4-explorer")])
    ],
    swiftLanguageModes: [.v6]
)
