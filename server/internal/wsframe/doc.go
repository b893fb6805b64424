// Package wsframe is the server side of the WebSocket frame codec (RFC
// 6455): reading masked client frames under a size limit, reassembling
// fragmented messages, checking text for UTF-8, and encoding the server's
// control and close frames. It has no I/O model: callers hand it a
// bufio.Reader and write the bytes it returns however they like.
//
// A message's text frame is not encoded here on the hot path: every wall
// message carries its frame pre-encoded once (wall.Message.Frame); Text is
// for the occasional frame that is not a message.
package wsframe
