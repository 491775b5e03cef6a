// Wrapper module that builds the pinned Dapr release (daprd + scheduler) from Dapr's Go module.
// `go install pkg@version` refuses modules with replace directives, so this module repeats
// Dapr's replace directives and declares the two commands as tool dependencies.
// Keep the dapr version here, devstack/versions.py and Dapr's replace block in sync.
module github.com/todo-agent/devstack/dapr-build

go 1.26.6

require github.com/dapr/dapr v1.18.3

tool (
	github.com/dapr/dapr/cmd/daprd
	github.com/dapr/dapr/cmd/scheduler
)

// Copied from github.com/dapr/dapr v1.18.3 go.mod (replace directives are not inherited).
replace (
	dubbo.apache.org/dubbo-go/v3 => dubbo.apache.org/dubbo-go/v3 v3.0.3-0.20230118042253-4f159a2b38f3
	github.com/apache/pulsar-client-go v0.18.0 => github.com/twmb/pulsar-client-go v0.20.1-0.20260624144353-90eefc81f70a
	gopkg.in/couchbaselabs/gocbconnstr.v1 => github.com/couchbaselabs/gocbconnstr v1.0.5
)

replace (
	github.com/chenzhuoyu/iasm => github.com/chenzhuoyu/iasm v0.9.0
	github.com/chzyer/logex => github.com/chzyer/logex v1.2.1
	github.com/gobwas/pool => github.com/gobwas/pool v0.2.1
	github.com/toolkits/concurrent => github.com/niean/gotools v0.0.0-20151221085310-ff3f51fc5c60
)
