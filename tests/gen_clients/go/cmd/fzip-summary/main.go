// fzip-summary: a tiny Go client of fzipd built on code generated from
// proto/ (protoc-gen-go + protoc-gen-go-grpc).  It calls
// fzip.v1.DataService/GetDataSummary with a bearer token and prints the
// summary as JSON, so a test can compare it with what the server holds.
//
//	fzip-summary -addr 127.0.0.1:50051 -token "$TOKEN"
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"time"

	fzipv1 "github.com/housef3/fzip/gen/go/fzip/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/encoding/protojson"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:50051", "fzipd address")
	token := flag.String("token", os.Getenv("FZIP_TOKEN"), "bearer token (default $FZIP_TOKEN)")
	flag.Parse()

	conn, err := grpc.NewClient(*addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		fmt.Fprintf(os.Stderr, "fzip-summary: %v\n", err)
		os.Exit(4)
	}
	defer conn.Close()

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	ctx = metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+*token)
	resp, err := fzipv1.NewDataServiceClient(conn).GetDataSummary(ctx, &fzipv1.GetDataSummaryRequest{})
	if err != nil {
		fmt.Fprintf(os.Stderr, "fzip-summary: %v\n", err)
		os.Exit(1)
	}
	out, err := protojson.MarshalOptions{UseProtoNames: true, EmitUnpopulated: true}.Marshal(resp.GetSummary())
	if err != nil {
		fmt.Fprintf(os.Stderr, "fzip-summary: %v\n", err)
		os.Exit(1)
	}
	fmt.Println(string(out))
}
