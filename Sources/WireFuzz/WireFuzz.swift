// Fuzz target for the wire parsers. Built by scripts/fuzz with `-sanitize=fuzzer -D FUZZING`, libFuzzer supplies
// main() and calls LLVMFuzzerTestOneInput; a normal build gets a small main that replays files (for regressions).
import Wire

/// Every parser on the same bytes, as an IPv4 packet, a bare TCP segment and a bare ICMP message; emit what parses.
@inline(never)
func exercise(_ bytes: [UInt8]) {
    if let v = try? IPv4PacketView(checking: bytes) {
        _ = v.checksumVerifies
        if let h = try? IPv4Header.parse(v) {
            var out: [UInt8] = []
            h.emit(payloadLength: v.payload.count, into: &out)
        }
        if let t = try? TCPSegmentView(checking: v.payload), let h = try? TCPHeader.parse(t) {
            var out: [UInt8] = []
            h.emit(payload: Array(t.payload), source: v.source, destination: v.destination, into: &out)
        }
        if let m = try? ICMPv4Message.parse(v.payload) {
            var out: [UInt8] = []
            m.emit(into: &out)
        }
    }
    if let t = try? TCPSegmentView(checking: bytes) { _ = try? TCPHeader.parse(t) }
    _ = try? ICMPv4Message.parse(bytes[...])
}

#if FUZZING
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzOne(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    exercise(data.map { Array(UnsafeBufferPointer(start: $0, count: size)) } ?? [])
    return 0
}

@_silgen_name("LLVMFuzzerRunDriver")
func LLVMFuzzerRunDriver(_ argc: UnsafeMutablePointer<CInt>, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?>,
                         _ callback: @convention(c) (UnsafePointer<UInt8>?, Int) -> CInt) -> CInt

/// SwiftPM links an executable's entry point as `<module>_main`; hand it to libFuzzer's driver.
@_cdecl("WireFuzz_main")
public func wireFuzzMain(_ argc: CInt, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> CInt {
    var c = argc
    var v = argv
    return LLVMFuzzerRunDriver(&c, &v, { data, size in fuzzOne(data, size) })
}
#else
@main
struct Replay {
    static func main() {
        // Replay files given as arguments (hex or raw); used to re-run a crash the fuzzer found.
        for path in CommandLine.arguments.dropFirst() {
            guard let f = fopen(path, "rb") else { continue }
            var bytes: [UInt8] = []
            var buf = [UInt8](repeating: 0, count: 4096)
            while true { let n = fread(&buf, 1, buf.count, f); if n <= 0 { break }; bytes += buf[0..<n] }
            fclose(f)
            exercise(bytes)
            print("\(path): ok")
        }
    }
}
#endif

#if canImport(Glibc)
import Glibc
#endif
