import CLibFuzzer

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Runs libFuzzer's driver over this process's arguments, calling `test` once
/// per input, and exits with the driver's status. Each target's `main` calls
/// it: SwiftPM names every executable's entry point after its target, which
/// leaves no room for libFuzzer's own `main` (see CLibFuzzer.h).
public func runLibFuzzer(_ test: @convention(c) (UnsafePointer<UInt8>?, Int) -> CInt) -> Never {
    var argc = CommandLine.argc
    var argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>? = CommandLine.unsafeArgv
    exit(LLVMFuzzerRunDriver(&argc, &argv, test))
}
