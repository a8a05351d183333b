/// What every role's settings have in common, so `dlogd ROLE` reads, overrides and checks them one way.
public protocol RoleSettings: Sendable {
    init()
    /// The config keys this role knows; any other key in its file is refused.
    static var keys: Set<String> { get }
    /// Applies a config file's values, checking each.
    mutating func apply(_ file: ConfigFile) throws(ConfigFile.Problem)
    var host: String { get set }
    var adminSocket: String? { get set }
}

extension BookieSettings: RoleSettings {}
extension MetadataSettings: RoleSettings {}
extension ProxySettings: RoleSettings {}
extension StandaloneSettings: RoleSettings {}
