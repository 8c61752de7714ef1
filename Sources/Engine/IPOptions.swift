import NetCore
import SystemPackage
import Wire

/// IP options set with `setsockopt(IP_OPTIONS)`, compiled as `ip_options_get()` / `ip_options_compile(net, opt, NULL)`
/// do (net/ipv4/ip_options.c, ip_sockglue.c): the first source-route hop moves to `faddr` and the rest slide left,
/// leaving the last slot for the final destination, written at send by `ip_options_build()`.
public struct SocketIPOptions: Sendable, Equatable {
    /// The compiled option bytes, padded to a multiple of 4 (`opt->__data`).
    public private(set) var bytes: [UInt8]
    /// The first hop of a source route (`opt->faddr`), where the SYN is actually sent.
    public private(set) var firstHop: IPv4Address?
    /// Offset of the source-route option inside `bytes` (`opt->srr` minus the IP header).
    public private(set) var sourceRouteOffset: Int?
    public private(set) var isStrict = false

    public var optlen: Int { bytes.count }
    public var hasSourceRoute: Bool { firstHop != nil }

    /// `do_ip_setsockopt(IP_OPTIONS)`: EINVAL for the kernel's reasons (length over 40, an option running past the
    /// end, a source route whose pointer is not 4, whose length is under 7 or not 3 + 4n, or a second source route).
    public static func compile(_ user: [UInt8]) -> Result<SocketIPOptions, Errno> {
        if user.count > 40 { return .failure(.invalidArgument) }
        var b = user
        while b.count % 4 != 0 { b.append(IPv4OptionType.end) }
        var o = SocketIPOptions(bytes: b, firstHop: nil, sourceRouteOffset: nil, isStrict: false)
        var i = 0
        while i < b.count {
            let type = b[i]
            if type == IPv4OptionType.end {
                // Everything after END becomes END.
                for k in i..<b.count { b[k] = IPv4OptionType.end }
                break
            }
            if type == IPv4OptionType.nop { i += 1; continue }
            guard i + 1 < b.count else { return .failure(.invalidArgument) }
            let len = Int(b[i + 1])
            guard len >= 2, len <= b.count - i else { return .failure(.invalidArgument) }
            switch type {
            case IPv4OptionType.lsrr, IPv4OptionType.ssrr:
                guard len >= 3, b[i + 2] >= 4 else { return .failure(.invalidArgument) }
                if o.sourceRouteOffset != nil { return .failure(.invalidArgument) }
                guard b[i + 2] == 4, len >= 7, (len - 3) & 3 == 0 else { return .failure(.invalidArgument) }
                o.firstHop = IPv4Address(UInt32(b[i + 3]) << 24 | UInt32(b[i + 4]) << 16 | UInt32(b[i + 5]) << 8 | UInt32(b[i + 6]))
                if len > 7 { b.replaceSubrange((i + 3)..<(i + len - 4), with: b[(i + 7)..<(i + len)]) }
                o.isStrict = type == IPv4OptionType.ssrr
                o.sourceRouteOffset = i
            case IPv4OptionType.recordRoute:
                guard len >= 3, b[i + 2] >= 4 else { return .failure(.invalidArgument) }
                if Int(b[i + 2]) <= len, Int(b[i + 2]) + 3 > len { return .failure(.invalidArgument) }
            default:
                break
            }
            i += len
        }
        o.bytes = b
        return .success(o)
    }

    /// `ip_options_build()`: the option bytes for a packet to `finalDestination` (written into the last route slot).
    public func build(finalDestination: IPv4Address) -> [UInt8] {
        var b = bytes
        if let off = sourceRouteOffset {
            let last = off + Int(b[off + 1]) - 4
            b[last] = UInt8(finalDestination.value >> 24)
            b[last + 1] = UInt8(finalDestination.value >> 16 & 0xff)
            b[last + 2] = UInt8(finalDestination.value >> 8 & 0xff)
            b[last + 3] = UInt8(finalDestination.value & 0xff)
        }
        return b
    }

    /// The options as parsed values (for traces and for the IPv4 header).
    public func parsed(finalDestination: IPv4Address) -> [IPv4Option] {
        (try? IPv4Option.parseAll(build(finalDestination: finalDestination))) ?? []
    }
}

/// The source route a user gives (`--lsrr G1,G2` or a check's `source-route:`), as the bytes a program passes to
/// setsockopt(IP_OPTIONS): `SourceRoute.optionBytes`.
public func sourceRouteOption(strict: Bool, hops: [IPv4Address]) -> [UInt8] {
    SourceRoute(strict: strict, hops: hops).optionBytes
}
