import Glibc
import Netlink
import SystemPackage

/// What is wrong with a file a user named, in plain words: the path, what is wrong, what to do. No Foundation error
/// domains, no "the operation could not be completed".
public struct FileProblem: Error, CustomStringConvertible, Sendable, Equatable {
    /// The path as the user wrote it.
    public var path: String
    /// What is wrong with it ("no such file", "is a directory", ...).
    public var problem: String
    /// What to do, if there is something to say.
    public var hint: String?
    /// Where in the file, when the problem is in its bytes (1-based).
    public var line: Int?, column: Int?

    public init(path: String, _ problem: String, hint: String? = nil, line: Int? = nil, column: Int? = nil) {
        self.path = path; self.problem = problem; self.hint = hint; self.line = line; self.column = column
    }

    /// `PATH` or `PATH:LINE:COL`, as compilers name a place.
    public var place: String { line.map { "\(path):\($0):\(column ?? 1)" } ?? path }

    public var description: String { "\(place): \(problem)" + (hint.map { " (\($0))" } ?? "") }

    /// The usual errnos of open/stat/read/write/rename in the words a user needs; others by strerror.
    static func words(_ e: Errno) -> String {
        switch e {
        case .noSuchFileOrDirectory: "no such file or directory"
        case .permissionDenied, .notPermitted: "permission denied"
        case .isDirectory: "is a directory"
        case .notDirectory: "a part of the path is not a directory"
        case .readOnlyFileSystem: "the file system is read-only"
        case .noSpace: "no space left on the device"
        case .tooManySymbolicLinkLevels: "is a symbolic link"
        case .fileNameTooLong: "the name is too long"
        case .fileExists: "already exists"
        default: String(cString: strerror(e.rawValue)).lowercased()
        }
    }
}

/// A file's kind from `st_mode`, in words.
func kindWords(_ mode: mode_t) -> String {
    switch mode & S_IFMT {
    case S_IFDIR: "a directory"
    case S_IFLNK: "a symbolic link"
    case S_IFIFO: "a FIFO (named pipe)"
    case S_IFCHR: "a character device"
    case S_IFBLK: "a block device"
    case S_IFSOCK: "a socket"
    default: "a regular file"
    }
}

/// `lstat`: nil when nothing is there.
func linkStatus(_ path: String) -> stat? {
    var st = stat()
    let r = retryingInterrupts { lstat(path, &st) }
    if case .success = r { return st }
    return nil
}
