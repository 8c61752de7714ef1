@_exported import NetCore
