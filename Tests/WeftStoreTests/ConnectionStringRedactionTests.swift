import Testing

@testable import WeftStore

struct ConnectionStringRedactionTests {
    @Test(arguments: [
        ("postgresql://weft:s3cr%21t@db:5432/weft", ["s3cr%21t", "s3cr!t"]),
        ("postgres://weft@db/weft?sslmode=require&password=p4ss&x=1", ["p4ss"]),
        ("host=db password = 'it\\'s secret' user=weft", ["it\\'s secret", "it's secret"]),
        ("host=db password=plain user=weft", ["plain"]),
        ("postgresql://weft@db:5432/weft", []),
    ])
    func findsEveryPasswordSpelling(connectionString: String, expected: [String]) {
        #expect(ConnectionStringRedaction.secrets(in: connectionString) == expected)
    }

    @Test func masksTheConnectionStringAndItsPasswordInMessages() {
        let url = "postgresql://weft:hunter2@db/weft"
        let message = "bad URI \"\(url)\" (password hunter2)"
        #expect(
            ConnectionStringRedaction.redact(message, connectionString: url)
                == "bad URI \"postgresql://weft:***@db/weft\" (password ***)"
        )
    }
}
