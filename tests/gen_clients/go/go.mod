// The Go client of the generated-clients test (tests/gen_clients).  The
// module path matches the protos' go_package so that the generated code
// (written into the build tree next to a copy of this file) imports as
// github.com/housef3/fzip/gen/go/fzip/v1.
module github.com/housef3/fzip

go 1.23

require (
	google.golang.org/grpc v1.72.1
	google.golang.org/protobuf v1.36.6
)

require (
	golang.org/x/net v0.35.0 // indirect
	golang.org/x/sys v0.30.0 // indirect
	golang.org/x/text v0.22.0 // indirect
	google.golang.org/genproto/googleapis/rpc v0.0.0-20250218202821-56aae31c358a // indirect
)
