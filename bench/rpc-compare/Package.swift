// swift-tools-version: 6.1
//
// rpc-compare: Weft's RPC layer (frames over OpenSSL TLS over TCP, on SwiftNIO)
// against grpc-swift-2 (HTTP/2 over swift-nio-ssl TLS), both in one process on
// loopback. A package of its own so the main build never pays for gRPC.
//
//   scripts/bench-rpc [--seconds 2] [--rounds 3]      (see docs/benchmarks.md)
import PackageDescription

let package = Package(
    name: "rpc-compare",
    platforms: [.macOS(.v15)],
    dependencies: [
        .package(name: "weft", path: "../.."),
        .package(url: "https://github.com/grpc/grpc-swift-2", from: "2.4.3"),
        .package(url: "https://github.com/grpc/grpc-swift-nio-transport", from: "2.9.2"),
        .package(url: "https://github.com/apple/swift-nio", from: "2.80.0"),
        .package(url: "https://github.com/apple/swift-nio-ssl", from: "2.34.0"),
    ],
    targets: [
        .executableTarget(
            name: "rpc-compare",
            dependencies: [
                .product(name: "WeftTransport", package: "weft"),
                .product(name: "WeftCrypto", package: "weft"),
                .product(name: "WeftWire", package: "weft"),
                .product(name: "GRPCCore", package: "grpc-swift-2"),
                .product(name: "GRPCNIOTransportHTTP2", package: "grpc-swift-nio-transport"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
            ],
            swiftSettings: [.swiftLanguageMode(.v6)]
        )
    ]
)
